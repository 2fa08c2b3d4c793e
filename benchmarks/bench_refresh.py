"""Index refresh policies under an encoder that changes every step: rows re-encoded, time, and rank error.

A synthetic corpus of N random unit vectors (d dimensions, fixed seed) is encoded by a
`RandomWalkEncoder` (benchmarks/_common.py): after every step each document's vector takes a fresh
random step of norm ``--drift`` and the encoder's ``version`` goes up, as a model's does after an
optimiser step. One `LazyIndex` per policy (``lazy``, ``periodic`` with ``--refresh-every``, ``full``,
``frozen``) starts from the corpus at version 0; then, for S steps, all of them see the same batch of
B queries (noisy copies of random gold documents under the current encoder) and search it.

Per policy and step:

- ``rows_reencoded``: ``SearchResult.stats.rows_reencoded``;
- ``search_ms``: wall time of ``index.search`` (scoring, top-K, re-encoding, writing rows back);
- the rank error against the exact search: ``exact`` = gold ranks and top-K of the same queries
  against the whole corpus re-encoded by the current version (computed outside the timed region);
  ``|index gold rank - exact gold rank|`` per query (mean, median, p90, max over all S x B queries,
  and the share of queries ranked exactly), and the top-K overlap: |index top-K ∩ exact top-K| / K.

The synthetic encoder is a table look-up (microseconds per row), so ``search_ms`` is the index's own
cost. ``--encode-us-per-row`` adds a sleep of that many microseconds per re-encoded row (wall time of
a slower encoder, not its CPU load); the second table instead models the time per step of real
encoders: search time + rows re-encoded / (documents per second), with the rates of ``--encoder-rate``
(defaults measured on the 2-core CPU of docs/performance.md, see ENCODER_RATES).

Usage: ``python benchmarks/bench_refresh.py`` (defaults: N=100,000, d=576, B=64, k=100, 20 steps;
well under 2 minutes on 2 cores). Prints Markdown tables and writes JSON (default
benchmarks/results/bench_refresh.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import RandomWalkEncoder, environment, unit_rows, write_json

from sr3_env.index import LazyIndex

POLICIES = ("lazy", "periodic", "full", "frozen")

#: Documents per second of real encoders on the 2-core CPU (fp32, torch 2.13, 2 threads):
#: SmolLM2 from benchmarks/results/bench_embedder.json (batch 16; wordnet-revdict glosses are
#: about 25 prompt tokens, semanlink pages are cut to 128); all-MiniLM-L6-v2 (sr3_env.MiniLMEncoder,
#: batch 64) on the first 512 wordnet-revdict documents, measured once with the machine partly busy.
ENCODER_RATES = {"SmolLM2-135M, 25-token docs": 36.4, "SmolLM2-135M, 128-token docs": 7.6,
                 "all-MiniLM-L6-v2, 25-token docs": 81.0}


def exact_search(queries: torch.Tensor, corpus: torch.Tensor, gold: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B,) 1-based gold ranks and (B, k) top rows of a bare search of the whole, fresh corpus."""
    scores = queries @ corpus.T  # (B, N)
    top = torch.topk(scores, k, dim=1).indices
    gold_t = torch.as_tensor(gold)
    ranks = 1 + (scores > scores[torch.arange(len(gold)), gold_t].unsqueeze(1)).sum(1)
    return ranks.numpy(), top.numpy()


def top_k_overlap(found: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """(B,) |found_b ∩ exact_b| / k for (B, k) row lists (rows within a list are distinct)."""
    same = torch.as_tensor(found)[:, :, None] == torch.as_tensor(exact)[:, None, :]  # (B, k, k)
    return same.any(dim=2).sum(dim=1).numpy() / exact.shape[1]


def error_summary(errors: np.ndarray) -> dict:
    if errors.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "p90": float("nan"), "max": 0, "exact_fraction": float("nan")}
    return {"mean": float(errors.mean()), "median": float(np.median(errors)), "p90": float(np.percentile(errors, 90)),
            "max": int(errors.max()), "exact_fraction": float((errors == 0).mean())}


def summarise_policy(per_step: list[dict], errors: np.ndarray, in_top_k: np.ndarray) -> dict:
    """Means over the steps; rank errors over all the steps' queries (and over those whose gold is in the exact top-K)."""
    mean = lambda key: float(np.mean([s[key] for s in per_step]))  # noqa: E731
    return {"rows_reencoded_per_step": mean("rows_reencoded"), "search_ms_mean": mean("search_ms"),
            "search_ms_median": float(np.median([s["search_ms"] for s in per_step])), "index_ms_mean": mean("index_ms"),
            "rank_error": error_summary(errors), "rank_error_gold_in_top_k": error_summary(errors[in_top_k]),
            "top_k_overlap": mean("top_k_overlap"), "stale_fraction": mean("stale_fraction"), "steps": per_step}


def parse_rates(items: list[str] | None) -> dict[str, float]:
    if not items:
        return dict(ENCODER_RATES)
    rates = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"--encoder-rate takes NAME=DOCS_PER_SECOND (e.g. 'MiniLM=81'), got {item!r}.")
        rates[name] = float(value)
    return rates


def run(args: argparse.Namespace) -> dict:
    N, d, B, k = args.n_docs, args.dim, args.batch, args.top_k
    rng = np.random.default_rng(args.seed)
    base = unit_rows(rng.standard_normal((N, d), dtype=np.float32))
    encoder = RandomWalkEncoder(base, step=args.drift, seconds_per_row=args.encode_us_per_row * 1e-6)
    del base
    texts = [f"doc{i}" for i in range(N)]
    indexes = {p: LazyIndex(texts, encoder, refresh=p, refresh_every=args.refresh_every if p == "periodic" else None,
                            embeddings=encoder.current.copy(), device="cpu", candidate_search="torch")
               for p in args.policies}  # each its own copy: the index writes re-encoded rows in place
    qrng = np.random.default_rng(args.seed + 1)

    def batch() -> tuple[torch.Tensor, np.ndarray]:
        gold = qrng.integers(N, size=B)
        noise = qrng.standard_normal((B, d), dtype=np.float32)
        noise *= args.noise / np.linalg.norm(noise, axis=1, keepdims=True)
        return torch.from_numpy(unit_rows(encoder.current[gold] + noise)), gold

    queries, gold = batch()  # warm-up at version 0: nothing is stale, nothing timed
    for index in indexes.values():
        index.search(queries, [[g] for g in gold], k=k)

    steps = {p: [] for p in args.policies}
    errors = {p: [] for p in args.policies}
    exact_ranks = []  # per step, (B,)
    for step in range(1, args.steps + 1):
        encoder.advance()  # the model changes: every row of every index is now stale
        queries, gold = batch()
        exact_rank, exact_top = exact_search(queries, torch.from_numpy(encoder.current), gold, k)
        exact_ranks.append(exact_rank)
        names = list(indexes)
        for policy in names[step % len(names):] + names[:step % len(names)]:  # rotated: no policy always goes first
            index = indexes[policy]
            start = time.perf_counter()
            result = index.search(queries, [[g] for g in gold], k=k)
            search_ms = (time.perf_counter() - start) * 1000.0
            rank = np.array([r[0] for r in result.gold_ranks], dtype=np.int64)
            error = np.abs(rank - exact_rank)
            errors[policy].append(error)
            rows = result.stats.rows_reencoded
            steps[policy].append({
                "step": step, "rows_reencoded": rows, "search_ms": search_ms,
                "index_ms": search_ms - rows * args.encode_us_per_row / 1000.0,  # without the modelled sleep
                "rank_error_mean": float(error.mean()), "exact_fraction": float((error == 0).mean()),
                "top_k_overlap": float(top_k_overlap(result.top_rows, exact_top).mean()),
                "stale_fraction": result.stats.stale_fraction})

    exact_all = np.concatenate(exact_ranks)
    in_top_k = exact_all <= k  # the queries whose gold the exact search puts in its top-K
    policies = {p: summarise_policy(steps[p], np.concatenate(errors[p]), in_top_k) for p in args.policies}
    rates = parse_rates(args.encoder_rate)
    modelled = {policy: {name: row["index_ms_mean"] / 1000.0 + row["rows_reencoded_per_step"] / rate
                         for name, rate in rates.items()} for policy, row in policies.items()}
    return {"config": vars(args), "environment": environment(),
            "exact": {"gold_rank_median": float(np.median(exact_all)), "gold_rank_mean": float(exact_all.mean()),
                      "recall_at_k": float((exact_all <= k).mean())},
            "policies": policies, "encoder_rates_docs_per_s": rates, "modelled_step_s": modelled}


def report(results: dict) -> None:
    args, env, policies = results["config"], results["environment"], results["policies"]
    k = args["top_k"]
    print(f"\nN={args['n_docs']} d={args['dim']} batch={args['batch']} top_k={k} steps={args['steps']} "
          f"drift={args['drift']}/step refresh_every={args['refresh_every']} encode={args['encode_us_per_row']} µs/row | "
          f"torch {env['torch']}, {env['threads']} threads, {env['cpu']}, fp32\n")
    exact = results["exact"]
    print(f"Exact search (fresh corpus): gold rank median {exact['gold_rank_median']:.0f}, mean {exact['gold_rank_mean']:.1f}, "
          f"recall@{k} {exact['recall_at_k']:.2f}\n")
    print(f"| policy | rows re-encoded/step | search ms/step (mean) | median | rank error (mean) | median | p90 | max | "
          f"ranks exact | rank error, gold in exact top-{k} (mean) | top-{k} overlap | stale fraction |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for policy, row in policies.items():
        e = row["rank_error"]
        print(f"| {policy} | {row['rows_reencoded_per_step']:.0f} | {row['search_ms_mean']:.1f} | {row['search_ms_median']:.1f} | "
              f"{e['mean']:.2f} | {e['median']:.0f} | {e['p90']:.0f} | {e['max']} | {e['exact_fraction']:.1%} | "
              f"{row['rank_error_gold_in_top_k']['mean']:.2f} | {row['top_k_overlap']:.3f} | {row['stale_fraction']:.3f} |")

    names = list(results["encoder_rates_docs_per_s"])
    print("\nModelled seconds per step with a real encoder (index time + rows re-encoded / documents per second):\n")
    print("| policy | " + " | ".join(f"{n} ({results['encoder_rates_docs_per_s'][n]:g} docs/s)" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for policy, row in results["modelled_step_s"].items():
        print(f"| {policy} | " + " | ".join(f"{row[n]:,.2f}" for n in names) + " |")

    print("\nPer step: rows re-encoded / mean rank error\n")
    print("| step | " + " | ".join(policies) + " |")
    print("|---:|" + "---:|" * len(policies))
    for i in range(args["steps"]):
        cells = [f"{p['steps'][i]['rows_reencoded']} / {p['steps'][i]['rank_error_mean']:.2f}" for p in policies.values()]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-docs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--batch", type=int, default=64, help="queries per step")
    parser.add_argument("--top-k", type=int, default=100, help="candidates per query (the lazy policy re-encodes their stale rows)")
    parser.add_argument("--steps", type=int, default=20, help="encoder versions; one search per policy at each")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--refresh-every", type=int, default=5, help="encoder versions between full refreshes of 'periodic'")
    parser.add_argument("--drift", type=float, default=0.05,
                        help="norm of each row's random step per version (rows are unit vectors at version 0)")
    parser.add_argument("--noise", type=float, default=6.0, help="norm of the noise added to a gold doc to make a query")
    parser.add_argument("--encode-us-per-row", type=float, default=0.0,
                        help="sleep this many microseconds per re-encoded row (models a slow encoder's wall time)")
    parser.add_argument("--encoder-rate", action="append", metavar="NAME=DOCS_PER_S",
                        help="an encoder speed for the modelled table (repeatable; default: ENCODER_RATES in the script)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench_refresh.json")
    args = parser.parse_args(argv)
    if args.top_k > args.n_docs:
        parser.error(f"--top-k ({args.top_k}) must be at most --n-docs ({args.n_docs}).")

    start = time.perf_counter()
    results = run(args)
    results["wall_s"] = time.perf_counter() - start
    report(results)
    out = Path(args.out)
    write_json(out, results)
    print(f"\nwrote {out} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
