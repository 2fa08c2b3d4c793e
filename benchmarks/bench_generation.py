"""Reasonings per second through the dynamic and the static key/value cache, side by side.

The reasoning embedder (the bundled SmolLM2-135M-Instruct, or ``--model``) writes a reasoning and reads its
embedding for ``--queries`` wordnet-revdict queries, in batches of ``--batch``, at most ``--max-new-tokens``
tokens each (greedy: the settings of the GPU figures in docs/performance.md are 64 queries, batch 32, 48 tokens),
once per ``--caches`` setting of `ReasoningEmbedder.generation_cache`:

- ``dynamic``: the cache grown token by token, every kernel launched for every token; after a shared prefix
  each row leaves the batch when it stops (`decode_leaving`), so a trained model that stops early gains;
- ``static``: a static cache; on CUDA the decoding step is compiled and replayed as a CUDA graph, and the first
  pass over each batch shape compiles it (timed apart, as the warm-up). On a CPU it runs eagerly.

Each setting: one warm-up pass, then ``--repeats`` timed passes, the settings taking turns (the median is
reported). Each row gives
reasonings/s, generated tokens/s, the speed-up over the dynamic cache, and how many reasonings have the same
greedy tokens as the dynamic cache's (with the largest difference between their embeddings). A random-weight
stand-in never writes <|embed_token|>, so every reasoning runs to its cap.

Usage: ``python benchmarks/bench_generation.py --device cuda`` (on a GPU most of the time is compiling; on a CPU
the defaults take minutes: ``--queries 16 --max-new-tokens 24`` for a quick look). Prints a Markdown table and
writes JSON (default benchmarks/results/bench_generation.json).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import environment, write_json

from sr3_agent import ReasoningEmbedder
from sr3_agent.model.static_cache import GENERATION_CACHES
from sr3_env import load_dataset


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_pass(embedder: ReasoningEmbedder, texts: list[str], batch: int, max_new_tokens: int) -> tuple[float, list]:
    """Seconds of one pass over ``texts`` in batches, and the rollouts."""
    synchronize(embedder.device)
    start = time.perf_counter()
    rollouts = [embedder.generate_reasoning(texts[i:i + batch], max_new_tokens=max_new_tokens)
                for i in range(0, len(texts), batch)]
    synchronize(embedder.device)
    return time.perf_counter() - start, rollouts


def measure(embedder: ReasoningEmbedder, texts: list[str], args: argparse.Namespace) -> list[dict]:
    """Each setting of ``args.caches``: a warm-up pass, then ``args.repeats`` timed passes, the settings taking turns
    (so that a machine whose speed drifts affects each alike); the rollouts of each setting's last pass."""
    warmups, times, rollouts = {}, {setting: [] for setting in args.caches}, {}
    for setting in args.caches:
        embedder.generation_cache = setting
        warmups[setting], _ = one_pass(embedder, texts, args.batch, args.max_new_tokens)
    for _ in range(args.repeats):
        for setting in args.caches:
            embedder.generation_cache = setting
            seconds, rollouts[setting] = one_pass(embedder, texts, args.batch, args.max_new_tokens)
            times[setting].append(seconds)
    compiled = hasattr(embedder._causal_lm(), "_compiled_call")  # set by generate when it compiled its decoding step
    rows = []
    for setting in args.caches:
        seconds = statistics.median(times[setting])
        tokens = sum(int(r.reasoning_lengths.sum()) for r in rollouts[setting])
        rows.append({"cache": setting, "compiled": compiled and setting != "dynamic" and embedder.device.type == "cuda",
                     "warmup_s": round(warmups[setting], 3), "seconds": round(seconds, 4),
                     "seconds_all": [round(t, 4) for t in times[setting]],
                     "reasonings_per_s": round(len(texts) / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                     "mean_reasoning_tokens": round(tokens / len(texts), 1), "rollouts": rollouts[setting]})
    return rows


def compare(row: dict, reference: dict) -> None:
    """Fill ``row``'s speed-up and agreement with the ``reference`` (dynamic) row: reasonings whose tokens are the
    same, and the largest difference between their embeddings (where both read them from the generation's cache)."""
    same = total = 0
    diff = 0.0
    for mine, theirs in zip(row["rollouts"], reference["rollouts"]):
        for i in range(len(mine.input_ids)):
            total += 1
            if torch.equal(mine.input_ids[i][mine.attention_mask[i].bool()],
                           theirs.input_ids[i][theirs.attention_mask[i].bool()]):
                same += 1
                if mine.embeddings is not None and theirs.embeddings is not None:
                    diff = max(diff, float((mine.embeddings[i] - theirs.embeddings[i]).abs().max()))
    row.update(speedup=round(reference["seconds"] / row["seconds"], 2), same_greedy_tokens=same, reasonings=total,
               max_abs_diff_same_rows=diff)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="causal LM name or folder (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--queries", type=int, default=64, help="wordnet-revdict queries per pass")
    parser.add_argument("--batch", type=int, default=32, help="queries generated side by side (`sr3 eval`'s default)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reasoning cap (the main job's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting, after one warm-up pass")
    parser.add_argument("--caches", nargs="+", default=["dynamic", "static"], choices=GENERATION_CACHES,
                        help="generation_cache settings to time (the first is the reference of speed-up and tokens)")
    parser.add_argument("--bf16", action="store_true", help="bf16 compute (autocast) instead of fp32")
    parser.add_argument("--output", default="benchmarks/results/bench_generation.json")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu.")
    if min(args.queries, args.batch, args.max_new_tokens, args.repeats) < 1:
        parser.error("--queries, --batch, --max-new-tokens and --repeats must be >= 1.")

    embedder = ReasoningEmbedder.from_pretrained(args.model, device=args.device)
    embedder.autocast_dtype = torch.bfloat16 if args.bf16 else None
    texts = list(load_dataset("wordnet-revdict").query_texts[:args.queries])
    rows = measure(embedder, texts, args)
    for row in rows:
        compare(row, rows[0])

    print(f"{embedder.name} on {args.device} ({'bf16' if args.bf16 else 'fp32'}): {len(texts)} greedy reasonings of "
          f"<= {args.max_new_tokens} tokens, batches of {args.batch}, median of {args.repeats}\n")
    print(f"| cache | compiled | warm-up s | seconds | reasonings/s | tokens/s | mean tokens | speed-up | "
          f"same greedy tokens as {rows[0]['cache']} | max abs diff (same rows) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [r["cache"], "yes" if r["compiled"] else "no", r["warmup_s"], r["seconds"], r["reasonings_per_s"],
                 r["tokens_per_s"], r["mean_reasoning_tokens"], f"{r['speedup']}x",
                 f"{r['same_greedy_tokens']}/{r['reasonings']}", f"{r['max_abs_diff_same_rows']:.1e}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for row in rows:
        del row["rollouts"]
    result = {"environment": {**environment(dtype="bf16" if args.bf16 else "fp32"), "device": args.device,
                              **({"gpu": torch.cuda.get_device_name()} if args.device.startswith("cuda") else {})},
              "model": embedder.name, "settings": vars(args), "rows": rows}
    write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main()
