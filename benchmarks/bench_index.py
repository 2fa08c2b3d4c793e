"""Benchmark the corpus index and the vectorised environment step against a bare torch baseline.

Measures, on a synthetic corpus of random unit vectors (N x d, fixed seed) and batches of B noisy
copies of random gold documents (so gold ranks are meaningful):

1. ``bare``: ``S = Q @ E.T``; ``torch.topk(S, k)``; gold rank = 1 + (S > S[b, gold]).sum(1);
2. ``LazyIndex.search`` (refresh='lazy', unchanged encoder: nothing re-encoded), with
   candidate_search='torch' and 'faiss';
3. one step of ``RetrievalEmbedVectorEnv`` (validation + search + reward + infos) on a prebuilt index;
4. a deliberately drifting encoder (``version`` bumped every step) under refresh='lazy' and 'full':
   rows re-encoded per step and wall time per step.

Usage: ``python benchmarks/bench_index.py`` (see docs/performance.md). Prints Markdown tables and
writes a JSON file (default benchmarks/results/bench_index.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import DriftingEncoder, environment, summary, timed, unit_rows

from sr3_env.data import RetrievalDataset
from sr3_env.index import LazyIndex
from sr3_env.vector import RetrievalEmbedVectorEnv


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-docs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="encoder versions (steps) in the drifting-encoder runs")
    parser.add_argument("--n-queries", type=int, default=1000, help="queries in the in-memory dataset of the env step")
    parser.add_argument("--noise", type=float, default=6.0, help="norm of the noise added to a gold doc to make a query")
    parser.add_argument("--drift", type=float, default=0.3, help="drift of the DriftingEncoder per version")
    parser.add_argument("--full-n-docs", type=int, default=None, help="corpus size for refresh='full' (default: --n-docs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench_index.json")
    args = parser.parse_args(argv)

    N, d, B, k = args.n_docs, args.dim, args.batch, args.top_k
    rng = np.random.default_rng(args.seed)
    base = unit_rows(rng.standard_normal((N, d), dtype=np.float32))
    encoder = DriftingEncoder(base, drift=args.drift)
    E_np = encoder.encode_rows(np.arange(N))  # the corpus at encoder version 0
    E = torch.from_numpy(E_np)

    def make_queries(gold: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((len(gold), d), dtype=np.float32)
        noise *= args.noise / np.linalg.norm(noise, axis=1, keepdims=True)
        return unit_rows(E_np[gold] + noise)

    # a pool of batches, cycled through so no measurement reuses one batch back to back
    pool = []
    for _ in range(8):
        gold = rng.integers(N, size=B)
        pool.append((torch.from_numpy(make_queries(gold)), gold))
    counter = {"i": 0}

    def next_batch():
        counter["i"] += 1
        return pool[counter["i"] % len(pool)]

    results: dict = {
        "config": vars(args),
        "environment": environment(),
    }
    try:
        import faiss

        results["environment"]["faiss"] = faiss.__version__
    except ImportError:
        faiss = None

    # 1. bare torch
    gold_ranks_bare = []

    def bare():
        Q, gold = next_batch()
        S = Q @ E.T
        top = torch.topk(S, k, dim=1).indices
        g = torch.as_tensor(gold)
        ranks = 1 + (S > S[torch.arange(B), g].unsqueeze(1)).sum(1)
        gold_ranks_bare.append(ranks)
        return top, ranks

    rows = {}
    rows["bare torch (Q@E.T, topk, rank)"] = summary(timed(bare, args.repeats, args.warmup))
    all_ranks = torch.cat(gold_ranks_bare).numpy()
    results["gold_rank"] = {"median": float(np.median(all_ranks)), "mean": float(all_ranks.mean()),
                            "recall_at_k": float((all_ranks <= k).mean())}

    # 2. LazyIndex.search, nothing stale
    searches = {"index.search (torch)": "torch"}
    if faiss is not None:
        searches["index.search (faiss)"] = "faiss"
    indexes = {}
    for label, method in searches.items():
        index = LazyIndex([f"doc{i}" for i in range(N)], encoder, refresh="lazy", embeddings=E_np, device="cpu",
                          candidate_search=method)
        indexes[method] = index

        def search(index=index):
            Q, gold = next_batch()
            result = index.search(Q, [[g] for g in gold], k=k)
            assert result.stats.rows_reencoded == 0
            return result

        rows[label] = summary(timed(search, args.repeats, args.warmup))

    # agreement check: the index's ranks equal the bare ranks on one batch
    Q, gold = pool[0]
    S = Q @ E.T
    bare_ranks = (1 + (S > S[torch.arange(B), torch.as_tensor(gold)].unsqueeze(1)).sum(1)).numpy()
    index_ranks = np.array([r[0] for r in indexes["torch"].search(Q, [[g] for g in gold], k=k).gold_ranks])
    results["ranks_agree_with_bare"] = bool((bare_ranks == index_ranks).all())

    # 3. the vector environment step
    nq = args.n_queries
    q_gold = rng.integers(N, size=nq)
    doc_ids = [f"d{i}" for i in range(N)]
    dataset = RetrievalDataset(name="synthetic", split="test", doc_ids=doc_ids, titles=[""] * N,
                               texts=[f"doc{i}" for i in range(N)], query_ids=[f"q{j}" for j in range(nq)],
                               query_texts=[f"query {j}" for j in range(nq)],
                               qrels={f"q{j}": {doc_ids[g]: 1} for j, g in enumerate(q_gold)})
    query_table = make_queries(q_gold)
    env = RetrievalEmbedVectorEnv(num_envs=B, dataset=dataset, encoder=encoder, index=indexes["torch"], top_k=k)
    _, infos = env.reset(seed=args.seed)
    state = {"ids": infos["query_id"]}

    def env_step():
        actions = query_table[[dataset.query_row[q] for q in state["ids"]]]
        _, rewards, _, _, step_infos = env.step(actions)
        state["ids"] = step_infos["query_id"]
        return rewards

    rows["env.step (RetrievalEmbedVectorEnv, B envs)"] = summary(timed(env_step, args.repeats, args.warmup))

    bare_ms = rows["bare torch (Q@E.T, topk, rank)"]["median_ms"]
    for row in rows.values():
        row["ratio_to_bare"] = row["median_ms"] / bare_ms
    results["scoring"] = rows
    target = rows["index.search (torch)"]["ratio_to_bare"]
    results["target"] = {"metric": "index.search (torch) median / bare median", "ratio": target, "limit": 1.2,
                         "pass": target <= 1.2}
    del indexes, env

    # 4. a drifting encoder: rows re-encoded and time per step
    drift_rows = []
    for policy in ("lazy", "full"):
        n = N if policy == "lazy" or args.full_n_docs is None else args.full_n_docs
        enc = DriftingEncoder(base[:n], drift=args.drift)
        index = LazyIndex([f"doc{i}" for i in range(n)], enc, refresh=policy, embeddings=enc.encode_rows(np.arange(n)),
                          device="cpu", candidate_search="torch")
        drng = np.random.default_rng(args.seed + 1)
        reencoded, times = [], []
        for _ in range(args.steps):
            gold = drng.integers(n, size=B)
            noise = drng.standard_normal((B, d), dtype=np.float32)
            noise *= args.noise / np.linalg.norm(noise, axis=1, keepdims=True)
            Q = unit_rows(base[gold] + noise)
            enc.version += 1  # the encoder changes once per step
            start = time.perf_counter()
            result = index.search(Q, [[g] for g in gold], k=k)
            times.append((time.perf_counter() - start) * 1000.0)
            reencoded.append(result.stats.rows_reencoded)
        drift_rows.append({"policy": policy, "n_docs": n, "steps": args.steps,
                           "rows_reencoded_per_step_mean": float(np.mean(reencoded)),
                           "rows_reencoded_per_step": reencoded, "ms_per_step_median": statistics.median(times),
                           "ms_per_step_mean": float(np.mean(times)), "ms_per_step": times,
                           "stale_fraction_after": result.stats.stale_fraction})
        del index
    results["drift"] = drift_rows

    # report
    env_info = results["environment"]
    print(f"\nN={N} d={d} batch={B} top_k={k} repeats={args.repeats} (median after {args.warmup} warm-up) | "
          f"torch {env_info['torch']}, {env_info['threads']} threads, {env_info['cpu']}, fp32\n")
    print("| measurement | ms/batch (median) | min | max | ratio to bare |")
    print("|---|---:|---:|---:|---:|")
    for label, row in rows.items():
        print(f"| {label} | {row['median_ms']:.1f} | {row['min_ms']:.1f} | {row['max_ms']:.1f} | {row['ratio_to_bare']:.2f} |")
    print(f"\nTarget: index.search (torch) / bare = {target:.2f} (limit 1.2): {'PASS' if target <= 1.2 else 'FAIL'}")
    print(f"Gold rank (bare): median {results['gold_rank']['median']:.0f}, mean {results['gold_rank']['mean']:.1f}, "
          f"recall@{k} {results['gold_rank']['recall_at_k']:.2f}; index ranks agree with bare: {results['ranks_agree_with_bare']}\n")
    print(f"Drifting encoder ({args.steps} steps, version +1 per step, batch {B}):\n")
    print("| policy | N | rows re-encoded/step (mean) | ms/step (median) | ms/step (mean) |")
    print("|---|---:|---:|---:|---:|")
    for row in drift_rows:
        print(f"| {row['policy']} | {row['n_docs']} | {row['rows_reencoded_per_step_mean']:.0f} | "
              f"{row['ms_per_step_median']:.1f} | {row['ms_per_step_mean']:.1f} |")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
