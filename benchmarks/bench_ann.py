"""Approximate candidate search (FAISS IVF, re-scored exactly) against the exact index.

On a synthetic corpus of N unit vectors of dimension d with cluster structure (N / 50 cluster
centres, each row a centre plus noise; ``--rows-per-cluster 0`` for structureless random vectors,
the worst case for IVF) and B noisy copies of random gold rows per batch, for each ``ivf_probe``:

- time per batch of ``LazyIndex.search`` with ``candidate_search="ivf"`` against the exact index
  (``"torch"``) on the same data, in one run;
- candidate recall@10 and recall@k: the share of the exact top-10 (top-k) that the approximate
  search returns in its own top-10 (top-k);
- gold ranks: the share equal to the exact rank, and the mean absolute error (an approximate rank
  counts only the candidates above the gold, so it is never larger than the exact rank);
- the IVF build time.

Usage: ``python benchmarks/bench_ann.py`` (about 5 min on 2 CPU cores). Prints a Markdown table and
writes benchmarks/results/bench_ann.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _common import FixedEncoder, environment, write_json

from sr3_env.index import LazyIndex



def clustered_corpus(n: int, d: int, clusters: int, spread: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn((max(clusters, 1), d), generator=generator)
    centres /= centres.norm(dim=1, keepdim=True)
    out = torch.empty((n, d))
    for start in range(0, n, 65536):
        size = min(65536, n - start)
        noise = torch.randn((size, d), generator=generator)
        block = noise if clusters == 0 else \
            centres[torch.randint(clusters, (size,), generator=generator)] + spread * noise / d ** 0.5
        out[start:start + size] = block / block.norm(dim=1, keepdim=True)
    return out


def timed_searches(index: LazyIndex, batches, k: int) -> tuple[float, list]:
    index.search(*batches[0], k=k)  # warm-up
    times, results = [], []
    for q, gold in batches:
        start = time.perf_counter()
        results.append(index.search(q, gold, k=k))
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--rows-per-cluster", type=int, default=50,
                        help="corpus rows per cluster centre (0: structureless random vectors)")
    parser.add_argument("--spread", type=float, default=1.0, help="norm of a row's offset from its centre")
    parser.add_argument("--noise", type=float, default=0.5, help="norm of the noise that makes a query from its gold row")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per setting")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--probes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--candidates", type=int, default=1000, help="IVF candidates per query (ann_candidates)")
    parser.add_argument("--lists", type=int, default=None, help="IVF cells (default: about sqrt(N))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench_ann.json")
    args = parser.parse_args(argv)
    k, rows = args.top_k, []
    for n in args.sizes:
        clusters = n // args.rows_per_cluster if args.rows_per_cluster else 0
        E = clustered_corpus(n, args.dim, clusters, args.spread, args.seed)
        rng = np.random.default_rng(args.seed)
        batches = []
        for _ in range(args.batches + 1):
            gold = rng.integers(n, size=args.batch)
            noise = torch.as_tensor(rng.standard_normal((args.batch, args.dim)), dtype=torch.float32)
            q = E[gold] + args.noise * noise / noise.norm(dim=1, keepdim=True)
            batches.append((q / q.norm(dim=1, keepdim=True), gold[:, None]))
        texts = [f"doc{i}" for i in range(n)]
        exact = LazyIndex(texts, FixedEncoder(args.dim), embeddings=E, device="cpu")
        exact_ms, exact_results = timed_searches(exact, batches, k)
        del exact
        start = time.perf_counter()
        ivf = LazyIndex(texts, FixedEncoder(args.dim), embeddings=E, device="cpu", candidate_search="ivf",
                        ann_candidates=args.candidates, ivf_lists=args.lists)
        build_s = time.perf_counter() - start
        for probe in args.probes:
            ivf._ivf.index.nprobe = probe
            ivf_ms, ivf_results = timed_searches(ivf, batches, k)
            recall, recall10, equal, error = [], [], [], []
            for a, b in zip(exact_results, ivf_results[:len(exact_results)]):
                recall += [len(set(x) & set(y)) / k for x, y in zip(a.top_rows, b.top_rows)]
                recall10 += [len(set(x[:10]) & set(y[:10])) / min(10, k) for x, y in zip(a.top_rows, b.top_rows)]
                ra, rb = np.concatenate(a.gold_ranks), np.concatenate(b.gold_ranks)
                equal += list(ra == rb)
                error += list(np.abs(ra - rb))
            exact_ranks = np.concatenate([np.concatenate(r.gold_ranks) for r in exact_results])
            row = {"n": n, "d": args.dim, "clusters": clusters, "lists": int(ivf._ivf.index.nlist), "probe": probe, "candidates": args.candidates,
                   "exact_ms": exact_ms, "ivf_ms": ivf_ms, "speedup": exact_ms / ivf_ms, "build_s": build_s,
                   "recall_at_k": float(np.mean(recall)), "recall_at_10": float(np.mean(recall10)), "ranks_equal": float(np.mean(equal)),
                   "rank_abs_error_mean": float(np.mean(error)), "exact_rank_median": float(np.median(exact_ranks)),
                   "exact_ranks_within_candidates": float(np.mean(exact_ranks <= args.candidates))}
            rows.append(row)
            print(f"N={n:,} probe={probe}: exact {exact_ms:.0f} ms, ivf {ivf_ms:.0f} ms, recall@{k} {row['recall_at_k']:.3f}",
                  flush=True)
        del ivf, E
    lines = [f"| N | d | IVF cells | probe | candidates | exact ms | IVF ms | speed-up | recall@10 | recall@{k} | gold rank median (exact) | "
             "gold ranks equal | rank error (mean) | IVF build s |", "|" + "---:|" * 14]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['d']} | {r['lists']} | {r['probe']} | {r['candidates']} | {r['exact_ms']:.0f} | "
                     f"{r['ivf_ms']:.0f} | {r['speedup']:.1f}x | {r['recall_at_10']:.3f} | {r['recall_at_k']:.3f} | {r['exact_rank_median']:.0f} | {r['ranks_equal']:.3f} | "
                     f"{r['rank_abs_error_mean']:.1f} | {r['build_s']:.1f} |")
    print("\n" + "\n".join(lines))
    results = {"config": vars(args), "environment": environment(), "rows": rows}
    write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
