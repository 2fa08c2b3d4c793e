"""How fast the bundled reasoning embedder encodes on this machine: documents, queries, reasoning, SFT steps.

Measures, with the bundled SmolLM2-135M-Instruct (fp32) on real texts of the bundled datasets:

1. documents per second for ``encode_documents`` (wordnet-revdict glosses: short; semanlink pages:
   cut to ``--max-length`` prompt tokens), for a few batch sizes, with the prompt tokens per second;
2. queries per second for ``encode_queries`` directly and with reasoning (``--max-new-tokens``);
3. the projected time to encode the whole 82,115-document wordnet-revdict corpus.

Usage: ``python benchmarks/bench_embedder.py`` (about 3 minutes on 2 cores). Prints a Markdown
table and writes JSON (default benchmarks/results/bench_embedder.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sr3_agent import ReasoningEmbedder
from sr3_env import load_dataset


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def measure_documents(embedder: ReasoningEmbedder, name: str, count: int, batch_sizes: list[int]) -> list[dict]:
    texts = load_dataset(name).documents[:count]
    tokens = sum(len(p) + 1 for p in embedder.prompt_ids(texts, embedder.prompts.document))
    rows = []
    for batch_size in batch_sizes:
        embedder.batch_size = batch_size
        seconds = timed(embedder.encode_documents, texts)
        rows.append({"what": f"documents ({name})", "batch_size": batch_size, "texts": len(texts),
                     "tokens_per_text": round(tokens / len(texts), 1), "seconds": round(seconds, 2),
                     "texts_per_s": round(len(texts) / seconds, 1), "tokens_per_s": round(tokens / seconds)})
    return rows


def measure_queries(embedder: ReasoningEmbedder, count: int, max_new_tokens: int, batch_size: int) -> list[dict]:
    texts = load_dataset("wordnet-revdict").query_texts[:count]
    embedder.batch_size = batch_size
    rows = []
    for reasoning in (False, True):
        seconds = timed(embedder.encode_queries, texts, reasoning=reasoning, max_new_tokens=max_new_tokens)
        rows.append({"what": "queries, " + (f"reasoning (<= {max_new_tokens} new tokens)" if reasoning else "direct"),
                     "batch_size": batch_size, "texts": len(texts), "tokens_per_text": None,
                     "seconds": round(seconds, 2), "texts_per_s": round(len(texts) / seconds, 1), "tokens_per_s": None})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=512, help="documents per measurement")
    parser.add_argument("--queries", type=int, default=64, help="queries per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--output", default="benchmarks/results/bench_embedder.json")
    args = parser.parse_args(argv)

    embedder = ReasoningEmbedder.from_pretrained(device="cpu", max_length=args.max_length)
    rows = measure_documents(embedder, "wordnet-revdict", args.docs, args.batch_sizes)
    rows += measure_documents(embedder, "semanlink", min(args.docs, 128), args.batch_sizes)
    rows += measure_queries(embedder, args.queries, args.max_new_tokens, batch_size=32)
    best = max(r["texts_per_s"] for r in rows if r["what"] == "documents (wordnet-revdict)")
    full_corpus_minutes = 82115 / best / 60
    print("| what | batch | texts | tokens/text | seconds | texts/s | tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['batch_size']} | {r['texts']} | {r['tokens_per_text'] or ''} | {r['seconds']} | "
              f"{r['texts_per_s']} | {r['tokens_per_s'] or ''} |")
    print(f"\nwhole wordnet-revdict corpus (82,115 documents) at {best} docs/s: about {full_corpus_minutes:.0f} minutes")
    result = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
              "settings": vars(args), "rows": rows, "wordnet_full_corpus_minutes": round(full_corpus_minutes, 1)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
