"""How fast the bundled reasoning embedder encodes, with prefix reuse against the plain path, side by side.

With the bundled SmolLM2-135M-Instruct (fp32) on real texts of the bundled datasets, each measurement
runs twice in this process, interleaved: the **plain** path (``reuse_prefix = False``: every
templated prompt computed whole, as a batched forward of the prompts; a reasoning embedded by a
second pass over the whole sequence) and the **prefix** path (the shared prompt prefix's key/value
cache computed once per model version; a reasoning's embedding read from the generation's cache).

1. documents per second for ``encode_documents`` (wordnet-revdict glosses; semanlink pages cut to
   ``--max-length`` prompt tokens), at a few batch sizes, and the largest difference between the
   two paths' vectors;
2. queries per second for ``encode_queries``, directly and with reasoning (``--max-new-tokens``,
   greedy, the main job's setting), and the difference between the two paths' vectors;
3. tokens computed per text (each path) against the tokens of the text itself, and the ratio of the
   measured time to the model's FLOP floor on this CPU (tokens computed x FLOPs per token / the
   fp32 matmul rate measured here at the start);
4. the whole 82,115-document wordnet-revdict corpus: projected from the best documents/s, or encoded
   for real with ``--full-corpus`` (prefix path; minutes).

Usage: ``python benchmarks/bench_embedder.py`` (about 5 minutes on 2 cores; ``--full-corpus`` adds
the real encode). Prints Markdown tables and writes JSON (default benchmarks/results/bench_embedder.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, write_json

from sr3_agent import ReasoningEmbedder
from sr3_env import load_dataset

WORDNET_DOCS = 82115


def matmul_gflops(size: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """fp32 matrix-product rate of this device (torch's threads on a CPU): the FLOP floor's reference."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_token(embedder: ReasoningEmbedder, context: int) -> float:
    """Forward FLOPs per token: 2 x the decoder's matrix parameters (embeddings and LM head are not
    multiplied) plus attention over ``context`` earlier tokens."""
    config = embedder.model.config
    matrices = sum(p.numel() for n, p in embedder._decoder().named_parameters() if p.dim() == 2 and "embed" not in n)
    head_dim = config.hidden_size // config.num_attention_heads
    attention = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim * context
    return 2 * matrices + attention


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def both_paths(embedder: ReasoningEmbedder, fn, *args, **kwargs) -> dict:
    """Run ``fn`` on the plain path, then with prefix reuse; seconds and outputs of each."""
    out = {}
    for path, reuse in (("plain", False), ("prefix", True)):
        embedder.reuse_prefix = reuse
        out[path] = timed(fn, *args, **kwargs)
    embedder.reuse_prefix = True
    return out


def token_counts(embedder: ReasoningEmbedder, texts: list[str], instruction: str) -> dict:
    """Mean tokens per text: its own, the whole prompt + token (plain), the rest after the prefix + token (prefix)."""
    own = np.mean([len(embedder.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])
    prompts = embedder.prompt_ids(texts, instruction)
    prefix = len(embedder.prefix_ids(instruction))
    return {"text": float(own), "plain": float(np.mean([len(p) + 1 for p in prompts])),
            "prefix": float(np.mean([len(p) + 1 - prefix for p in prompts])), "shared_prefix": prefix}


def in_bf16(embedder: ReasoningEmbedder, fn, *args, **kwargs):
    """Seconds and output of ``fn`` with bf16 autocast (a new model version, so the prefix is recomputed in it)."""
    embedder.autocast_dtype, embedder.version = torch.bfloat16, embedder.version + 1
    try:
        return timed(fn, *args, **kwargs)
    finally:
        embedder.autocast_dtype, embedder.version = None, embedder.version + 1


def direct_rows(embedder, what: str, texts: list[str], instruction: str, encode, batch_sizes: list[int],
                floor: float, bf16: bool = False) -> list[dict]:
    tokens = token_counts(embedder, texts, instruction)
    rows = []
    for batch_size in batch_sizes:
        embedder.batch_size = batch_size
        encode(texts[:batch_size])  # warm-up (and the prefix of this model version)
        runs = both_paths(embedder, encode, texts)
        if bf16:  # the prefix path again with bf16 compute (the floor stays fp32's)
            in_bf16(embedder, encode, texts[:batch_size])  # warm-up
            runs["prefix, bf16"] = in_bf16(embedder, encode, texts)
        plain_s, plain_v = runs["plain"]
        for path, (seconds, vectors) in runs.items():
            computed = tokens[path.split(",")[0]] * len(texts)
            rows.append({"what": what, "path": path, "batch_size": batch_size, "texts": len(texts),
                         "text_tokens_per_text": round(tokens["text"], 1),
                         "computed_tokens_per_text": round(tokens[path.split(",")[0]], 1),
                         "seconds": round(seconds, 4), "texts_per_s": round(len(texts) / seconds, 1),
                         "speedup": round(plain_s / seconds, 2),
                         "flop_floor_ratio": round(seconds / (computed * floor), 2),
                         "max_abs_diff": float(np.abs(vectors - plain_v).max()),
                         "min_cosine": float((vectors * plain_v).sum(axis=1).min())})
    return rows


def reasoning_rows(embedder, texts: list[str], max_new_tokens: int, batch_size: int, floor: float) -> list[dict]:
    embedder.batch_size = batch_size
    encode = lambda: embedder.encode_queries(texts, reasoning=True, max_new_tokens=max_new_tokens)  # noqa: E731
    runs = both_paths(embedder, encode)
    (plain_s, plain_v), (prefix_s, prefix_v) = runs["plain"], runs["prefix"]
    return [{"what": f"queries, reasoning (greedy, <= {max_new_tokens} new tokens)", "path": path,
             "batch_size": batch_size, "texts": len(texts), "text_tokens_per_text": None, "computed_tokens_per_text": None,
             "seconds": round(seconds, 4), "texts_per_s": round(len(texts) / seconds, 2), "speedup": round(plain_s / seconds, 2),
             "flop_floor_ratio": None, "max_abs_diff": float(np.abs(prefix_v - plain_v).max()),
             "min_cosine": float((prefix_v * plain_v).sum(axis=1).min())}
            for path, seconds in (("plain", plain_s), ("prefix", prefix_s))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="causal LM name or folder (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--docs", type=int, default=256, help="wordnet-revdict documents per measurement")
    parser.add_argument("--queries", type=int, default=128, help="direct queries per measurement")
    parser.add_argument("--reasoning-queries", type=int, default=64, help="reasoning queries per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--reasoning-batch", type=int, default=32, help="batch of the reasoning measurement "
                        "(`sr3 eval`'s default)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reasoning cap (the main job's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA the FLOP floor uses the fp32 matmul rate there)")
    parser.add_argument("--full-corpus", action="store_true", help="also encode all 82,115 wordnet-revdict documents")
    parser.add_argument("--bf16", action="store_true", help="also time the documents' prefix path with bf16 compute, "
                        "and encode the whole corpus (--full-corpus) with it")
    parser.add_argument("--output", default="benchmarks/results/bench_embedder.json")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu.")
    gflops = matmul_gflops(device=args.device)
    embedder = ReasoningEmbedder.from_pretrained(args.model, device=args.device, max_length=args.max_length)
    wordnet = load_dataset("wordnet-revdict")
    floor = flops_per_token(embedder, context=32) / (gflops * 1e9)  # seconds per token at the matmul rate
    rows = direct_rows(embedder, "documents (wordnet-revdict)", wordnet.documents[:args.docs], embedder.prompts.document,
                       embedder.encode_documents, args.batch_sizes, floor, bf16=args.bf16)
    semanlink = load_dataset("semanlink").documents[:64]
    rows += direct_rows(embedder, "documents (semanlink)", semanlink, embedder.prompts.document,
                        embedder.encode_documents, args.batch_sizes[:1],
                        flops_per_token(embedder, context=args.max_length // 2) / (gflops * 1e9))
    rows += direct_rows(embedder, "queries, direct (wordnet-revdict)", wordnet.query_texts[:args.queries],
                        embedder.prompts.query, embedder.encode_queries, args.batch_sizes[:1], floor)
    rows += reasoning_rows(embedder, wordnet.query_texts[:args.reasoning_queries], args.max_new_tokens,
                           args.reasoning_batch, floor)

    full_path = "prefix, bf16" if args.bf16 else "prefix"
    best = max(r["texts_per_s"] for r in rows if r["what"] == "documents (wordnet-revdict)" and r["path"] == full_path)
    full = {"path": full_path, "projected_minutes": round(WORDNET_DOCS / best / 60, 1), "docs_per_s_used": best}
    if args.full_corpus:
        embedder.batch_size = max(args.batch_sizes)
        encode = in_bf16 if args.bf16 else lambda _, fn, *a: timed(fn, *a)
        seconds, vectors = encode(embedder, embedder.encode_documents, load_dataset("wordnet-revdict").documents)
        full.update(measured_minutes=round(seconds / 60, 1), documents=len(vectors), batch_size=embedder.batch_size)

    print(f"fp32 matmul on {args.device}: {gflops:.0f} GFLOP/s ({torch.get_num_threads()} CPU threads); "
          f"model: {flops_per_token(embedder, 32) / 1e6:.0f} MFLOP per token\n")
    print("| what | path | batch | texts | text tokens/text | computed tokens/text | seconds | texts/s | speed-up | "
          "time / FLOP floor | max abs diff vs plain | min cosine vs plain |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [r["what"], r["path"], r["batch_size"], r["texts"], r["text_tokens_per_text"] or "",
                 r["computed_tokens_per_text"] or "", r["seconds"], r["texts_per_s"], f"{r['speedup']}x",
                 r["flop_floor_ratio"] or "", f"{r['max_abs_diff']:.1e}", f"{r['min_cosine']:.5f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"\n{embedder.name}; whole wordnet-revdict corpus ({WORDNET_DOCS:,} documents), {full_path} path: projected "
          f"{full['projected_minutes']} min at {best} docs/s"
          + (f"; encoded for real in {full['measured_minutes']} min (batch {full['batch_size']})" if args.full_corpus else ""))
    result = {"environment": {**environment(dtype="fp32"), "device": args.device}, "matmul_gflops": round(gflops, 1),
              "flops_per_token": flops_per_token(embedder, 32), "settings": vars(args), "rows": rows,
              "wordnet_full_corpus": full}
    write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main()
