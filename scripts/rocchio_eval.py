"""Rocchio pseudo-relevance feedback in `RetrievalRefine-v0`: does a second turn beat the first?

    python scripts/rocchio_eval.py                      # MiniLM; semanlink and wordnet-revdict, whole
    python scripts/rocchio_eval.py --max-docs 5000      # a sub-corpus (every gold document kept)

Turn 1 embeds the query with the frozen encoder (the plain dense-retrieval baseline); turn 2 is
`sr3_env.baselines.RocchioPolicy`: ``q' = alpha * q + beta * mean(top-k documents of turn 1)``,
normalised, on the same encoder's vectors. Both turns run in the vectorised environment (one index
search per turn for a batch of queries). For each dataset and each k, prints turn 1, turn 2 and
their paired difference with a 95% bootstrap interval (queries resampled) for MRR, nDCG@10 and
Recall@100, and how many queries' best gold rank got better or worse; writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import sr3_env
from sr3_agent.evaluation.evaluate import paired_bootstrap
from sr3_env.baselines import RocchioPolicy

METRICS = {"reciprocal_rank": "MRR", "ndcg@10": "nDCG@10", "recall@100": "Recall@100"}


def run_episodes(envs: gym.vector.VectorEnv, policy: RocchioPolicy, query_ids: list[str]) -> list[list[dict]]:
    """Per turn, the step info of every query (two-turn episodes, batches of ``num_envs`` queries)."""
    size = envs.unwrapped.num_envs
    turns: list[list[dict]] = [[], []]
    for start in range(0, len(query_ids), size):
        batch = query_ids[start:start + size]
        padded = batch + [batch[-1]] * (size - len(batch))  # the last batch: repeats, dropped below
        observations, _ = envs.reset(options={"query_ids": padded})
        for turn in range(2):
            observations, _, terminated, _, infos = envs.step(policy.act_batch(observations))
            step = infos["final_info"] if terminated.all() else infos
            turns[turn] += [{"query_id": step["query_id"][i], "rank": int(step["rank"][i]),
                             **{m: float(step["metrics"][m][i]) for m in METRICS}} for i in range(len(batch))]
    return turns


def compare_turns(turns: list[list[dict]]) -> dict:
    """Means of each metric on both turns, and the paired difference with its 95% interval."""
    out = {}
    for metric, label in METRICS.items():
        first = {row["query_id"]: row[metric] for row in turns[0]}
        second = {row["query_id"]: row[metric] for row in turns[1]}
        ci = paired_bootstrap(first, second)
        out[label] = {"turn1": float(np.mean(list(first.values()))), "turn2": float(np.mean(list(second.values()))),
                      "diff": ci["mean"], "low": ci["low"], "high": ci["high"]}
    ranks = np.array([[a["rank"], b["rank"]] for a, b in zip(*turns)])
    out["better"], out["worse"] = int((ranks[:, 1] < ranks[:, 0]).sum()), int((ranks[:, 1] > ranks[:, 0]).sum())
    return out


def evaluate(name: str, args: argparse.Namespace) -> list[dict]:
    dataset = sr3_env.load_dataset(name, split="test")
    if args.max_queries:
        dataset = dataset.subset(num_queries=args.max_queries, num_docs=args.max_docs or len(dataset.doc_ids), seed=0)
    elif args.max_docs:
        dataset = dataset.subset(num_docs=args.max_docs, seed=0)
    started = time.perf_counter()
    envs = gym.make_vec("RetrievalRefine-v0", num_envs=args.num_envs, vectorization_mode="vector_entry_point",
                        dataset=dataset, encoder=args.encoder, max_turns=2, feedback_k=max(args.k))
    index_seconds = time.perf_counter() - started
    rows = []
    for k in args.k:
        started = time.perf_counter()
        policy = RocchioPolicy.from_env(envs, alpha=args.alpha, beta=args.beta, k=k)
        result = compare_turns(run_episodes(envs, policy, list(dataset.query_ids)))
        rows.append({"dataset": name, "documents": len(dataset.doc_ids), "queries": len(dataset.query_ids),
                     "encoder": args.encoder, "k": k, "alpha": args.alpha, "beta": args.beta, **result,
                     "seconds": round(time.perf_counter() - started, 1), "index_seconds": round(index_seconds, 1)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| dataset | docs | queries | k | metric | turn 1 | turn 2 | turn 2 − turn 1 [95% CI] |",
             "|---|---:|---:|---:|---|---:|---:|---|"]
    for row in rows:
        for label in METRICS.values():
            m = row[label]
            lines.append(f"| {row['dataset']} | {row['documents']} | {row['queries']} | {row['k']} | {label} | "
                         f"{m['turn1']:.3f} | {m['turn2']:.3f} | {m['diff']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}] |")
    lines += ["", "| dataset | k | best gold rank better on turn 2 | worse | same |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        same = row["queries"] - row["better"] - row["worse"]
        lines.append(f"| {row['dataset']} | {row['k']} | {row['better']} | {row['worse']} | {same} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["semanlink", "wordnet-revdict"], help="bundled names or BEIR folders")
    parser.add_argument("--encoder", default="minilm", help="the frozen encoder (minilm, hashing)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 10], help="feedback documents averaged on turn 2")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the query vector")
    parser.add_argument("--beta", type=float, default=0.75, help="weight of the mean feedback-document vector")
    parser.add_argument("--num-envs", type=int, default=100, help="queries per batch (one index search per turn)")
    parser.add_argument("--max-docs", type=int, default=None, help="a sub-corpus of this size (gold documents kept)")
    parser.add_argument("--max-queries", type=int, default=None, help="a random sample of the test queries")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/rocchio_refine.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    rows = [row for name in args.datasets for row in evaluate(name, args)]
    print(markdown(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"command": " ".join(["python scripts/rocchio_eval.py", *(argv or [])]), "rows": rows},
                                      indent=1) + "\n")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
