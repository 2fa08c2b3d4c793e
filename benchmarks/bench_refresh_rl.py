"""Index refresh policies during a real RL run: what each costs per step, and what it does to the result.

Runs ``sr3 rl`` (`train_rl`) once per policy from the same starting model with the same seed and
settings, and reads the run's TensorBoard log back:

- rows re-encoded per step (``index/rows_reencoded``), as a share of the index, and its stale fraction;
- wall time per step, and the part of it spent scoring (where the re-encoding happens);
- dev nDCG@10 with reasoning at the start and after the last step.

Usage (about 20 min on 2 CPU cores with the defaults; run ``sr3 sft`` first):
    python benchmarks/bench_refresh_rl.py --model runs/sft/final
Prints a Markdown table and writes JSON (default benchmarks/results/bench_refresh_rl.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from sr3_agent import RLConfig, train_rl
from sr3_agent.training.train_command import read_scalars, stage_state
from sr3_agent.training.parts import training_data

TAGS = ("index/rows_reencoded", "index/stale_fraction", "time/generation_s", "time/encoding_s", "time/scoring_s",
        "time/update_s", "dev/ndcg@10_reasoning")


def summarise(policy: str, scalars: dict[str, list[tuple[int, float]]], corpus: int, seconds: float | None) -> dict:
    """One table row from a run's scalars (pure). Per-step means leave out step 1: the index was just
    encoded by the starting model, so nothing is stale yet under any policy."""
    mean = lambda tag: float(np.mean([v for step, v in scalars[tag] if step > 1]))  # noqa: E731
    step_s = sum(mean(f"time/{part}_s") for part in ("generation", "encoding", "scoring", "update"))
    curve = scalars["dev/ndcg@10_reasoning"]
    return {"policy": policy, "corpus_docs": corpus, "rows_reencoded_per_step": mean("index/rows_reencoded"),
            "share_of_corpus": mean("index/rows_reencoded") / corpus, "stale_fraction": mean("index/stale_fraction"),
            "scoring_s_per_step": mean("time/scoring_s"), "step_s": step_s, "ndcg@10_start": curve[0][1],
            "ndcg@10_end": curve[-1][1], "run_s": seconds}


def markdown(rows: list[dict]) -> str:
    lines = ["| refresh | index rows | rows re-encoded / step | share of index | scoring s / step | step s | "
             "nDCG@10 start | nDCG@10 end |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['corpus_docs']} | {r['rows_reencoded_per_step']:.0f} | {r['share_of_corpus']:.1%} | "
                     f"{r['scoring_s_per_step']:.2f} | {r['step_s']:.1f} | {r['ndcg@10_start']:.3f} | "
                     f"{r['ndcg@10_end']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/sft/final", help="starting model (an `sr3 sft` folder)")
    parser.add_argument("--policies", nargs="+", default=["lazy", "full"], choices=["lazy", "full", "periodic"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--queries", type=int, default=2000, help="training queries (their relevant documents stay)")
    parser.add_argument("--corpus-docs", type=int, default=1000)
    parser.add_argument("--eval-queries", type=int, default=100)
    parser.add_argument("--eval-docs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs/bench-refresh")
    parser.add_argument("--output", default="benchmarks/results/bench_refresh_rl.json")
    parser.add_argument("--reuse", action="store_true", help="summarise finished runs in --runs-dir again")
    args = parser.parse_args(argv)

    earlier = {}  # with --reuse, the wall times measured when the runs were made
    if args.reuse and Path(args.output).is_file():
        earlier = {row["policy"]: row.get("run_s") for row in json.loads(Path(args.output).read_text())["rows"]}
    rows = []
    for policy in args.policies:
        config = RLConfig(model=args.model, refresh=policy, steps=args.steps, num_queries=args.queries,
                          corpus_docs=args.corpus_docs,
                          eval_every=args.steps, eval_queries=args.eval_queries, eval_docs=args.eval_docs,
                          seed=args.seed, output_dir=f"{args.runs_dir}/{policy}", save_every=args.steps)
        seconds = earlier.get(policy)
        if not (args.reuse and stage_state(Path(config.output_dir)) == "done"):
            shutil.rmtree(config.output_dir, ignore_errors=True)  # a fresh log: no events left from an earlier run
            start = time.perf_counter()
            train_rl(config)
            seconds = time.perf_counter() - start
        scalars = read_scalars(Path(config.output_dir) / "tensorboard", TAGS)
        corpus = len(training_data(config).doc_ids)  # the index's real size: every relevant document is kept
        rows.append(summarise(policy, scalars, corpus, seconds))
        print(markdown(rows[-1:]))
    print(markdown(rows))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"machine": {"cpu_count": os.cpu_count(),
                                                         "platform": platform.platform()},
                                             "args": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return rows


if __name__ == "__main__":
    main()
