"""Long inputs: what documents and prompts of 128, 512 and 1,024 tokens cost to encode and to train on.

For each model (default: the bundled SmolLM2-135M-Instruct and Gemma-3-270m, whose sliding window is
512 tokens) and each prompt length, in a fresh process each (so that its peak memory is its own):

- **index**: `encode_documents` of ``--docs`` texts (what the corpus index and the evaluation do), docs/s;
- **train**: one SFT step at that length (``--batch`` queries, each with its positive and one hard
  negative, forward and backward, AdamW, its state allocated in the step), seconds;
- the process's peak resident memory, and whether the shared-prefix layout ran or the plain path
  (a prompt longer than a sliding window takes the plain path).

Texts are real wordnet-revdict glosses concatenated and cut to the length inside the chat template
(``max_length``). Prints a table and writes JSON.

    python benchmarks/bench_long_inputs.py [--models SmolLM2-135M-Instruct gemma-3-270m] [--lengths 128 512 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import environment, write_json

GIB = 1024 ** 3


def texts_of(length: int, count: int) -> list[str]:
    """``count`` texts of about ``length / 2`` to more than ``length`` tokens (cut at ``length`` in the
    template), as a real corpus varies: real glosses (about 4 tokens each), concatenated, each text its own."""
    from sr3_env import load_dataset

    documents = load_dataset("wordnet-revdict").documents
    out, start = [], 0
    for i in range(count):
        glosses = max(1, round(length / 4 * (0.5 + i / max(1, count - 1))))
        out.append(" ".join(documents[start:start + glosses]))
        start += glosses
    return out


def one(model: str, length: int, docs: int, batch: int, steps: int = 1) -> dict:
    """Measure one model at one length (run in its own process)."""
    import torch

    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.model.kvcache import attention_window
    from sr3_agent.training.sft import training_embeddings

    torch.manual_seed(0)
    embedder = ReasoningEmbedder.from_pretrained(model, device="cpu", max_length=length, batch_size=8)
    texts = texts_of(length, docs)
    tokens = [len(p) for p in embedder.prompt_ids(texts, embedder.prompts.document)]
    window = attention_window(embedder.model.config)
    embedder.encode_documents(texts[:2])  # warm-up
    start = time.perf_counter()
    embedder.encode_documents(texts)
    docs_per_s = len(texts) / (time.perf_counter() - start)

    embedder.model.train()
    optimizer = torch.optim.AdamW([p for p in embedder.model.parameters() if p.requires_grad], lr=1e-5)
    sequences = [ids + [embedder.embed_token_id]
                 for ids in embedder.prompt_ids(texts_of(length, 3 * batch), embedder.prompts.document)]
    instructions = [embedder.prompts.document] * len(sequences)
    seconds = []
    for _ in range(steps):  # the first step also allocates AdamW's state
        start = time.perf_counter()
        vectors, _, _ = training_embeddings(embedder, sequences, instructions)
        queries, positives, negatives = vectors[:batch], vectors[batch:2 * batch], vectors[2 * batch:]
        scores = queries @ torch.cat([positives, negatives]).T / 0.05
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return {"model": model, "length": length, "prompt_tokens": int(max(tokens)), "min_prompt_tokens": int(min(tokens)),
            "window": window, "plain_path_for_window": embedder.window_fallbacks > 0, "index_docs_per_s": docs_per_s,
            "sft_step_s": seconds[-1], "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["SmolLM2-135M-Instruct", "gemma-3-270m"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 512, 1024])
    parser.add_argument("--docs", type=int, default=16, help="documents encoded per measurement")
    parser.add_argument("--batch", type=int, default=2, help="SFT queries per step (each with 2 documents)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--output", default="benchmarks/results/bench_long_inputs.json")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.docs, args.batch)))
        return {}
    rows = []
    for model in args.models:
        for length in args.lengths:
            done = subprocess.run([sys.executable, __file__, "--one", model, str(length), "--docs", str(args.docs),
                                   "--batch", str(args.batch)], capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{model} at {length} tokens failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| model | prompt tokens | layout | index: docs/s | SFT step (batch {0}, 3 texts each): s | peak RSS GiB |"
          .format(args.batch))
    print("|---|---:|---|---:|---:|---:|")
    for row in rows:
        layout = f"plain where over the window ({row['window']})" if row["plain_path_for_window"] else "shared prefix"
        print(f"| {row['model']} | {row['min_prompt_tokens']}-{row['prompt_tokens']} | {layout} | {row['index_docs_per_s']:.1f} | "
              f"{row['sft_step_s']:.2f} | {row['peak_rss_gib']:.2f} |")
    results = {"environment": environment(), "rows": rows}
    write_json(args.output, results)
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
