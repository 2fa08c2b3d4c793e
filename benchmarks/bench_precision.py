"""How 16-bit storage of the corpus matrix (fp16, bf16) changes gold ranks and top-K against fp32.

The index multiplies a 16-bit matrix with fp32 accumulation and fp32 output (on CUDA with
``torch.mm(..., out_dtype=torch.float32)``; on a CPU by widening the matrix first, which gives the
same products up to summation order). Rounding unit vectors to 16 bits (unit roundoff u = 2^-11
for fp16, 2^-8 for bf16) moves a score by at most u(2 + u), by Cauchy-Schwarz, so a gold rank can
only move past rows whose fp32 score is within twice that of the gold's: near-ties. This script measures, on the same queries and
corpus, how many ranks move, by how much, whether every move stays within that near-tie bound,
and how much of the fp32 top-K the 16-bit index returns. Two corpora: random unit vectors, and
clustered ones (rows near cluster centres, so many near-ties).

Usage: ``python benchmarks/bench_precision.py`` (about 1 min on 2 CPU cores). Prints a Markdown
table and writes benchmarks/results/bench_precision.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import FixedEncoder, environment, write_json
from bench_ann import clustered_corpus

from sr3_env.index import LazyIndex

EPS = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}


def measure(E: torch.Tensor, q: torch.Tensor, gold: np.ndarray, k: int, device: str) -> list[dict]:
    texts = [f"doc{i}" for i in range(len(E))]
    exact = LazyIndex(texts, FixedEncoder(E.shape[1]), embeddings=E, device=device).search(q, gold[:, None], k=k)
    ranks32 = np.concatenate(exact.gold_ranks)
    scores32 = (q @ E.T).numpy()
    gold_scores = scores32[np.arange(len(q)), gold]
    rows = []
    for name, eps in EPS.items():
        found = LazyIndex(texts, FixedEncoder(E.shape[1]), embeddings=E, device=device, dtype=name).search(q, gold[:, None], k=k)
        ranks16 = np.concatenate(found.gold_ranks)
        moved = np.abs(ranks16 - ranks32)
        margin = 2 * eps * (2 + eps) + 1e-6  # unit vectors: a score moves by at most u(2+u), a difference twice that
        near = (np.abs(scores32 - gold_scores[:, None]) <= margin).sum(1) - 1  # other rows within it
        rows.append({"dtype": name, "queries": len(q), "ranks_equal": float(np.mean(moved == 0)),
                     "rank_moved_mean": float(moved.mean()), "rank_moved_max": int(moved.max()),
                     "moves_within_near_ties": bool(np.all(moved <= near)),
                     "near_ties_mean": float(near.mean()),
                     "top_k_overlap": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found.top_rows, exact.top_rows)])),
                     "top_scores_max_abs_diff": float(np.abs(found.top_scores[:, 0] - exact.top_scores[:, 0]).max()),
                     "gold_rank_median_fp32": float(np.median(ranks32))})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=1000, help="cluster centres of the clustered corpus")
    parser.add_argument("--noise", type=float, default=6.0, help="norm of the noise that makes a query from its gold row")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench_precision.json")
    args = parser.parse_args(argv)
    rows = []
    for corpus_name, clusters in (("random", 0), ("clustered", args.clusters)):
        E = clustered_corpus(args.n, args.dim, clusters, 1.0, args.seed)
        rng = np.random.default_rng(args.seed)
        gold = rng.integers(args.n, size=args.batch)
        noise = torch.as_tensor(rng.standard_normal((args.batch, args.dim)), dtype=torch.float32)
        q = E[gold] + args.noise * noise / noise.norm(dim=1, keepdim=True)
        q = q / q.norm(dim=1, keepdim=True)
        rows += [{"corpus": corpus_name, **row} for row in measure(E, q, gold, args.top_k, args.device)]
    lines = [f"| corpus | storage | queries | gold rank median (fp32) | ranks equal to fp32 | mean move | max move | "
             f"moves within near-ties | near-ties per gold (mean) | top-{args.top_k} overlap |", "|---|---|" + "---:|" * 8]
    for r in rows:
        lines.append(f"| {r['corpus']} | {r['dtype']} | {r['queries']} | {r['gold_rank_median_fp32']:.0f} | "
                     f"{r['ranks_equal']:.3f} | {r['rank_moved_mean']:.2f} | {r['rank_moved_max']} | "
                     f"{'yes' if r['moves_within_near_ties'] else 'NO'} | {r['near_ties_mean']:.1f} | {r['top_k_overlap']:.3f} |")
    print(f"\nN = {args.n:,}, d = {args.dim}, on {args.device}\n\n" + "\n".join(lines))
    results = {"config": vars(args), "environment": environment(), "rows": rows}
    write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
