"""Soak: a long run of the vectorised `RetrievalEmbed-v0` under an encoder that changes every step.

A synthetic corpus (N random unit vectors of d dimensions, fixed seed; documents ``doc<i>``) and Q
queries with one or two relevant documents each. The encoder is `DriftingEncoder`
(benchmarks/_common.py), whose ``version`` goes up before every step, so every row of the index is
stale one step after it was encoded; the index refreshes lazily (candidates and gold rows) and
spends a budget of ``--refresh-budget`` stalest rows per step. The agent acts with noisy copies of
each query's relevant document. For S steps of B queries (defaults: 10,000 steps of 64):

- resident memory (RSS: psutil, else /proc/self/statm) sampled every ``--sample-every`` steps; the
  growth after warm-up (the first ``--warmup`` steps) is (max RSS after warm-up - RSS at the end of
  warm-up) / RSS at the end of warm-up, and the slope of a least-squares line through the samples
  after warm-up (MB per 1,000 steps);
- the wall time of every ``env.step`` (median, p90, p99, max; the first and the last 1,000 steps);
- ``rows_reencoded_total`` (IndexStats) against the sum of the per-step ``rows_reencoded``, every step;
- every ``--check-every`` steps, the index invariants of that step against exact search (that step
  runs without the refresh budget, so the stored matrix after it is the one it scored): every gold
  row is fresh; every row whose version is the encoder's holds exactly the encoder's output now; the
  top-K scores equal an exact top-K of the stored matrix; each gold rank equals 1 + the number of
  stored rows scoring above the gold (scores within 1e-5 of it counted either way); the stale-row
  count equals the rows whose version is old. The rank error against a corpus fully re-encoded by
  the current version (rows outside the candidates may be stale: not an invariant) is recorded beside.

Usage: ``python benchmarks/bench_soak.py [--progress]`` (defaults: N=10,000, d=64, B=64, top-K 20, budget
64; 14.8 minutes on a 2-core machine shared with other jobs, about 10 ms per step while it was quiet).
Prints Markdown tables and writes JSON (default benchmarks/results/bench_soak.json).
tests/test_benchmarks.py runs a short version.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import DriftingEncoder, environment, unit_rows, write_json

from sr3_env.data import RetrievalDataset
from sr3_env.task import validate_actions
from sr3_env.vector import RetrievalEmbedVectorEnv


def rss_bytes() -> int:
    """Resident memory of this process now."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synthetic_task(n_docs: int, dim: int, n_queries: int, seed: int) -> tuple[RetrievalDataset, np.ndarray]:
    """A corpus of ``doc<i>`` texts (the encoder looks their rows up) and queries with 1-2 relevant documents."""
    rng = np.random.default_rng(seed)
    base = unit_rows(rng.standard_normal((n_docs, dim), dtype=np.float32))
    qrels = {f"q{j}": {f"d{int(g)}": 1 for g in rng.choice(n_docs, size=1 + j % 2, replace=False)}
             for j in range(n_queries)}
    dataset = RetrievalDataset(name="soak", split="test", doc_ids=[f"d{i}" for i in range(n_docs)], titles=[""] * n_docs,
                               texts=[f"doc{i}" for i in range(n_docs)], query_ids=list(qrels),
                               query_texts=[f"query {j}" for j in range(n_queries)], qrels=qrels)
    return dataset, base


def check_invariants(envs: RetrievalEmbedVectorEnv, encoder: DriftingEncoder, unit: np.ndarray, final: dict,
                     k: int) -> dict:
    """The index invariants of the step just taken (see the module docstring); raises AssertionError.

    The step ran without the refresh budget, so the stored matrix now is the one the step scored."""
    index, dataset = envs.index, envs.dataset
    version = int(encoder.version)
    gold_rows = [dataset.doc_rows(ids) for ids in final["gold_ids"]]
    every_gold = np.unique(np.concatenate(gold_rows))
    assert (index.row_versions[every_gold] == version).all(), "a gold row is stale after its search"
    fresh_rows = np.flatnonzero(index.row_versions == version)
    np.testing.assert_allclose(index.embeddings[fresh_rows].numpy(), encoder.encode_rows(fresh_rows), atol=1e-6,
                               err_msg="a row marked fresh does not hold the current encoder's vector")
    stored = index.embeddings.float()
    scores = torch.as_tensor(unit) @ stored.T  # (B, N): exact search of the stored matrix
    exact_top = torch.topk(scores, k, dim=1).values.numpy()
    np.testing.assert_allclose(np.stack(final["top_scores"]), exact_top, atol=1e-5,
                               err_msg="the top-K differs from an exact search")
    fresh = torch.as_tensor(unit) @ torch.as_tensor(encoder.encode_rows(np.arange(len(index)))).T
    errors = []
    for b, (rows, ranks) in enumerate(zip(gold_rows, final["gold_ranks"])):
        for row, rank in zip(rows, ranks):
            gold = scores[b, row]
            low, high = 1 + int((scores[b] > gold + 1e-5).sum()), 1 + int((scores[b] > gold - 1e-5).sum())
            assert low <= rank <= high, f"gold rank {rank} outside the exact [{low}, {high}]"
            errors.append(abs(rank - (1 + int((fresh[b] > fresh[b, row]).sum()))))
    stale = int((index.row_versions != version).sum())
    assert stale == int(np.asarray(final["index"]["stale_rows"])[0]), "stale_rows disagrees with the row versions"
    return {"fresh_rows": int(fresh_rows.size), "stale_rows": stale, "rank_error_vs_fresh_mean": float(np.mean(errors)),
            "rank_exact_vs_fresh": float(np.mean(np.asarray(errors) == 0))}


def soak(args: argparse.Namespace) -> dict:
    dataset, base = synthetic_task(args.n_docs, args.dim, args.n_queries, args.seed)
    encoder = DriftingEncoder(base, drift=args.drift)
    envs = RetrievalEmbedVectorEnv(num_envs=args.batch, dataset=dataset, encoder=encoder, top_k=args.top_k,
                                   refresh="lazy", refresh_budget=args.refresh_budget, device="cpu")
    first_gold = np.array([dataset.relevant_rows(q)[0][0] for q in dataset.query_ids])
    rng = np.random.default_rng(args.seed + 1)
    _, infos = envs.reset(seed=args.seed)
    query_rows = np.array([dataset.query_row[q] for q in infos["query_id"]])
    step_ms, reencoded, rss, checks = [], [], [], []
    total = 0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        actions = base[first_gold[query_rows]] + args.noise * rng.standard_normal((args.batch, args.dim), dtype=np.float32)
        encoder.version += 1  # the encoder changes every step: every row made before is stale now
        check = step % args.check_every == 0
        envs.index.refresh_budget = 0 if check else args.refresh_budget  # a check step scores the matrix it leaves
        begin = time.perf_counter()
        _, rewards, _, _, infos = envs.step(actions)
        step_ms.append((time.perf_counter() - begin) * 1000.0)
        final = infos["final_info"]
        rows = int(np.asarray(final["index"]["rows_reencoded"])[0])
        reencoded.append(rows)
        total += rows
        reported = int(np.asarray(final["index"]["rows_reencoded_total"])[0])
        assert reported == total, f"step {step}: rows_reencoded_total {reported} != sum of per-step counts {total}"
        assert np.isfinite(rewards).all()
        if step % args.sample_every == 0 or step == 1:
            rss.append((step, rss_bytes()))
        if check:
            checks.append({"step": step, **check_invariants(envs, encoder, validate_actions(actions, actions.shape),
                                                            final, args.top_k)})
        query_rows = np.array([dataset.query_row[q] for q in infos["query_id"]])
        if args.progress and step % args.check_every == 0:
            print(f"  step {step}: {np.median(step_ms[-args.check_every:]):.1f} ms/step, RSS {rss[-1][1] / 2**20:.1f} MB",
                  flush=True)
    return summarise(args, step_ms, reencoded, rss, checks, total, time.perf_counter() - start, envs)


def summarise(args, step_ms, reencoded, rss, checks, total, seconds, envs) -> dict:
    warm = [(s, b) for s, b in rss if s >= args.warmup]
    at_warmup = warm[0][1]
    after = np.array([b for _, b in warm], dtype=np.float64)
    steps_after = np.array([s for s, _ in warm], dtype=np.float64)
    slope = float(np.polyfit(steps_after, after, 1)[0]) * 1000 / 2**20 if len(warm) > 1 else 0.0
    window = min(1000, len(step_ms))
    times = np.array(step_ms)
    return {
        "environment": environment(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("out", "progress")},
        "seconds": seconds,
        "step_ms": {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)),
                    "p99": float(np.percentile(times, 99)), "max": float(times.max()),
                    "first_1000_median": float(np.median(times[:window])),
                    "last_1000_median": float(np.median(times[-window:]))},
        "memory": {"rss_first_mb": rss[0][1] / 2**20, "rss_at_warmup_mb": at_warmup / 2**20,
                   "rss_max_after_warmup_mb": float(after.max()) / 2**20, "rss_final_mb": rss[-1][1] / 2**20,
                   "growth_after_warmup_pct": 100.0 * (float(after.max()) - at_warmup) / at_warmup,
                   "final_vs_warmup_pct": 100.0 * (rss[-1][1] - at_warmup) / at_warmup,
                   "slope_mb_per_1000_steps": slope,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "samples": [[s, b] for s, b in rss]},
        "rows_reencoded": {"total_reported": int(envs.index.rows_reencoded_total), "sum_of_steps": int(sum(reencoded)),
                           "equal": int(envs.index.rows_reencoded_total) == int(sum(reencoded)),
                           "per_step_mean": float(np.mean(reencoded)), "per_step_max": int(max(reencoded))},
        "invariant_checks": {"passed": len(checks), "every": args.check_every, "checks": checks},
        "final_stale_fraction": float(np.mean(envs.index.row_versions != envs.encoder.version)),
    }


def print_tables(results: dict) -> None:
    s, t, m, r = results["settings"], results["step_ms"], results["memory"], results["rows_reencoded"]
    checks = results["invariant_checks"]
    print(f"\nSoak: {s['steps']:,} steps of {s['batch']} queries, N={s['n_docs']:,} x d={s['dim']}, top-K {s['top_k']}, "
          f"refresh budget {s['refresh_budget']}/step, encoder version +1 every step ({results['seconds'] / 60:.1f} min)\n")
    print("| per-step time (ms) | median | p90 | p99 | max | first 1,000 (median) | last 1,000 (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| env.step | {t['median']:.2f} | {t['p90']:.2f} | {t['p99']:.2f} | {t['max']:.2f} | "
          f"{t['first_1000_median']:.2f} | {t['last_1000_median']:.2f} |")
    print("\n| RSS (MB) | first step | end of warm-up | max after warm-up | final | growth after warm-up | slope (MB/1,000 steps) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| process | {m['rss_first_mb']:.1f} | {m['rss_at_warmup_mb']:.1f} | {m['rss_max_after_warmup_mb']:.1f} | "
          f"{m['rss_final_mb']:.1f} | {m['growth_after_warmup_pct']:+.2f}% | {m['slope_mb_per_1000_steps']:+.3f} |")
    errors = [c["rank_error_vs_fresh_mean"] for c in checks["checks"]]
    print(f"\nrows_reencoded_total {r['total_reported']:,} = sum of per-step counts {r['sum_of_steps']:,}: {r['equal']} "
          f"(mean {r['per_step_mean']:.0f} rows/step, max {r['per_step_max']}); invariant checks passed: {checks['passed']} "
          f"(every {checks['every']:,} steps); mean |rank - rank on a fully re-encoded corpus| at the checks: "
          f"{statistics.mean(errors) if errors else float('nan'):.2f}; stale fraction at the end "
          f"{results['final_stale_fraction']:.3f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64, help="queries per step (sub-environments)")
    parser.add_argument("--n-docs", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n-queries", type=int, default=5_000)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--refresh-budget", type=int, default=64)
    parser.add_argument("--drift", type=float, default=0.3)
    parser.add_argument("--noise", type=float, default=0.1, help="norm-ish of the noise added to the gold vector")
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--check-every", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_soak.json"))
    args = parser.parse_args(argv)
    if args.warmup >= args.steps or args.check_every > args.steps:
        parser.error("--warmup must be below --steps and --check-every at most --steps")
    results = soak(args)
    print_tables(results)
    write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
