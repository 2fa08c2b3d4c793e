"""The index sharded over P processes (torch.distributed) against one process, on the same data.

One process holding all N rows (with every CPU thread) is timed first; then the script starts
itself under ``torch.distributed.run`` with P processes (each with threads / P threads, each holding
N / P rows and searching its own share of the batch), and times the collective ``search``. Both
runs search the same batches of noisy copies of random gold rows, and the script checks that the
sharded ranks and top-K equal the single-process ones. On one machine this measures the cost of
the collectives (gather of queries, merge of top-K lists, all-reduce of counts); across machines,
sharding is what lets a corpus larger than one machine's memory be searched at all. "Equal"
means the same gold ranks and the same top-K score lists; rows of exactly tied scores may come in
another order (the share of top-K rows in the same position is reported too).

Usage: ``python benchmarks/bench_sharded.py`` (about 2 min on 2 CPU cores). Prints a Markdown table
and writes benchmarks/results/bench_sharded.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import FixedEncoder, environment, write_json

from sr3_env.index import LazyIndex



def data(n: int, d: int, batch: int, batches: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    E = torch.randn((n, d), generator=generator)
    E /= E.norm(dim=1, keepdim=True)
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(batches):
        gold = rng.integers(n, size=batch)
        q = E[gold] + 0.05 * d ** 0.5 * torch.as_tensor(rng.standard_normal((batch, d)), dtype=torch.float32) / d ** 0.5
        pool.append((q / q.norm(dim=1, keepdim=True), gold[:, None]))
    return E, pool


def time_searches(index: LazyIndex, pool, k: int, part: slice) -> tuple[list[float], list]:
    index.search(pool[0][0][part], pool[0][1][part], k=k)  # warm-up
    times, results = [], []
    for q, gold in pool:
        start = time.perf_counter()
        found = index.search(q[part], gold[part], k=k)
        times.append((time.perf_counter() - start) * 1000.0)
        results.append((found.top_rows, np.concatenate(found.gold_ranks), found.top_scores))
    return times, results


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, args.threads // world))
    E, pool = data(args.n, args.dim, args.batch, args.batches, args.seed)
    index = LazyIndex([f"doc{i}" for i in range(args.n)], FixedEncoder(args.dim), embeddings=E, device="cpu",
                      process_group="world")
    del E
    share = args.batch // world
    times, results = time_searches(index, pool, args.top_k, slice(rank * share, (rank + 1) * share))
    gathered = [None] * world
    dist.all_gather_object(gathered, (times, results, index.embeddings.shape[0]))
    if rank == 0:
        Path(args.worker_out).write_bytes(pickle.dumps(gathered))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--batch", type=int, default=64, help="queries per search, over all processes")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads over all processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench_sharded.json")
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_out:
        return worker(argparse.Namespace(**{**json.loads(Path(args.worker_out + ".json").read_text()),
                                            "worker_out": args.worker_out}))
    if args.batch % args.processes:
        parser.error(f"--batch ({args.batch}) must be a multiple of --processes ({args.processes}).")

    torch.set_num_threads(args.threads)
    E, pool = data(args.n, args.dim, args.batch, args.batches, args.seed)
    single = LazyIndex([f"doc{i}" for i in range(args.n)], FixedEncoder(args.dim), embeddings=E, device="cpu")
    single_times, single_results = time_searches(single, pool, args.top_k, slice(None))
    del single, E, pool

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "sharded.pkl")
        Path(out + ".json").write_text(json.dumps(vars(args)))  # the workers' settings (torchrun would parse argv)
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, "--worker-out", out]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // args.processes))})
        gathered = pickle.loads(Path(out).read_bytes())
    # the slowest process sets the pace of a collective search
    sharded_times = [max(per_rank[0][i] for per_rank in gathered) for i in range(args.batches)]
    top_equal, scores_equal, ranks_equal = [], [], []
    for i in range(args.batches):
        top, ranks, scores = (np.concatenate([per_rank[1][i][j] for per_rank in gathered]) for j in range(3))
        top_equal.append(np.mean(top == single_results[i][0]))
        scores_equal.append(np.mean(scores == single_results[i][2]))  # top-K score lists: the same up to ties' order
        ranks_equal.append(np.mean(ranks == single_results[i][1]))
    equal = min(scores_equal) == 1.0 and min(ranks_equal) == 1.0
    row = {"n": args.n, "d": args.dim, "batch": args.batch, "processes": args.processes, "threads": args.threads,
           "rows_per_process": [per_rank[2] for per_rank in gathered],
           "single_ms": statistics.median(single_times), "sharded_ms": statistics.median(sharded_times),
           "results_equal": bool(equal), "top_k_rows_equal": float(np.mean(top_equal)),
           "top_k_scores_equal": float(np.mean(scores_equal)),
           "gold_ranks_equal": float(np.mean(ranks_equal))}
    row["ratio"] = row["sharded_ms"] / row["single_ms"]
    print(f"\n| N | d | B | processes | threads in all | one process ms | sharded ms | sharded / one | ranks and top-K scores equal | top-K rows in the same place |\n"
          f"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {args.n:,} | {args.dim} | {args.batch} | {args.processes} | {args.threads} | {row['single_ms']:.0f} | "
          f"{row['sharded_ms']:.0f} | {row['ratio']:.2f} | {'yes' if equal else 'NO'} | {row['top_k_rows_equal']:.5f} |")
    results = {"config": {k: v for k, v in vars(args).items() if k != "worker_out"}, "environment": environment(), "row": row}
    write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
