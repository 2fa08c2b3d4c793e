"""Environment scoring throughput against the bare computation, over corpus size, dimension and batch size.

For every corpus of N random unit vectors of dimension d (fixed seed) and batches of B noisy copies
of random gold rows, measured side by side in one run (medians over repeats, after warm-up):

- ``read``: ``E.sum()``, one pass that reads the corpus matrix once: the memory-bandwidth floor;
- ``matmul``: the bare ``Q @ E.T``;
- ``bare``: ``Q @ E.T``, ``topk(k)`` and the gold rank ``1 + (S > S[b, gold]).sum(1)``: the least any
  exact search that also returns gold ranks must do;
- ``faiss``: FAISS flat inner-product search (``faiss.knn``, or ``knn_gpu`` on a GPU), top-K only;
- ``index``: ``LazyIndex.search`` (nothing stale, so nothing re-encoded): what the environment runs.

Targets (docs/performance.md): on a CPU, ``index`` at most 1.2x ``bare``; on a GPU, ``index`` within 2x
of ``read``. The grid (``--sizes`` x ``--dims`` at ``--batch``) answers how cost grows with the corpus;
the batch sweep (``--batches`` at ``--sweep-size``, ``--sweep-dim``) how it grows with the batch.

Usage: ``python benchmarks/bench_scoring.py`` (about 10 min on 2 CPU cores; ``--device cuda
--dtype float16`` on a GPU). Prints Markdown tables and writes benchmarks/results/bench_scoring.json
and a plot of the time per batch against N and B beside it (bench_scoring.png).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import FixedEncoder, environment, write_json

from sr3_env.index import LazyIndex

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}



def clock(fn, device: torch.device, budget_s: float, min_repeats: int, max_repeats: int, warmup: int = 2) -> dict:
    """Median wall time of ``fn`` in ms; repeats as many times as fit ``budget_s`` (within bounds)."""
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000.0

    for _ in range(warmup):
        first = once()
    repeats = int(min(max_repeats, max(min_repeats, budget_s * 1000.0 / max(first, 1e-3))))
    times = [once() for _ in range(repeats)]
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": repeats}


def corpus(n: int, d: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.empty((n, d), dtype=torch.float32)
    for start in range(0, n, 65536):  # in blocks: no second full-size temporary
        block = torch.randn((min(65536, n - start), d), generator=generator)
        matrix[start:start + len(block)] = block / block.norm(dim=1, keepdim=True)
    return matrix.to(device, dtype)


def measure(n: int, d: int, batch: int, k: int, args: argparse.Namespace, device: torch.device) -> dict:
    dtype = DTYPES[args.dtype]
    E = corpus(n, d, args.seed, device, dtype)
    rng = np.random.default_rng(args.seed)
    pool = []
    for _ in range(4):  # a few batches, cycled, so no call reuses the previous one's inputs
        gold = rng.integers(n, size=batch)
        noise = torch.as_tensor(rng.standard_normal((batch, d)), dtype=torch.float32, device=device)
        q = E[torch.as_tensor(gold, device=device)].float() + 0.05 * d ** 0.5 * noise / noise.norm(dim=1, keepdim=True)
        pool.append(((q / q.norm(dim=1, keepdim=True)).to(dtype), gold))
    turn = {"i": 0}

    def batch_of() -> tuple[torch.Tensor, np.ndarray]:
        turn["i"] += 1
        return pool[turn["i"] % len(pool)]

    def product(q: torch.Tensor) -> torch.Tensor:
        if dtype != torch.float32 and device.type == "cuda":
            return torch.mm(q, E.T, out_dtype=torch.float32)
        return (q.float() @ E.float().T) if dtype != torch.float32 else q @ E.T

    def bare() -> None:
        q, gold = batch_of()
        scores = product(q)
        torch.topk(scores, k, dim=1)
        gold_t = torch.as_tensor(gold, device=device)
        ((scores > scores.gather(1, gold_t[:, None])).sum(1) + 1).cpu()

    index = LazyIndex([f"doc{i}" for i in range(n)], FixedEncoder(d), embeddings=E.float().cpu() if device.type == "cuda" else E,
                      device=device, dtype=dtype)
    timings = {
        "read": clock(lambda: E.sum(dtype=torch.float32).item(), device, args.budget, 3, 50),
        "matmul": clock(lambda: product(batch_of()[0]), device, args.budget, 3, 50),
        "bare": clock(bare, device, args.budget, 3, 50),
        "index": clock(lambda: index.search(*(lambda qg: (qg[0], qg[1][:, None]))(batch_of()), k=k), device,
                       args.budget, 3, 50),
    }
    if args.faiss:
        from sr3_env._faiss import knn_inner_product

        timings["faiss"] = clock(lambda: knn_inner_product(batch_of()[0], index.embeddings, k), device, args.budget, 2, 20)
    q, gold = pool[0]  # the index's ranks are the bare ones (a check, not a timing)
    scores = product(q)
    expected = ((scores > scores.gather(1, torch.as_tensor(gold, device=device)[:, None])).sum(1) + 1).cpu().numpy()
    found = index.search(q, gold[:, None], k=k)
    bytes_read = n * d * E.element_size()
    row = {"n": n, "d": d, "batch": batch, "k": k, "dtype": args.dtype, "timings": timings,
           "ranks_equal_bare": bool(np.array_equal(np.concatenate(found.gold_ranks), expected)),
           "matrix_gb": bytes_read / 1e9, "read_gb_per_s": bytes_read / 1e9 / (timings["read"]["median_ms"] / 1000.0)}
    for name in ("matmul", "bare", "faiss"):
        if name in timings:
            row[f"index_over_{name}"] = timings["index"]["median_ms"] / timings[name]["median_ms"]
    row["index_over_read"] = timings["index"]["median_ms"] / timings["read"]["median_ms"]
    return row


def table(rows: list[dict]) -> str:
    has_faiss = any("faiss" in r["timings"] for r in rows)
    head = ["N", "d", "B", "read ms", "matmul ms", "bare ms", *(["faiss ms"] if has_faiss else []), "index ms",
            "index/bare", "index/matmul", *(["index/faiss"] if has_faiss else []), "index/read", "ranks = bare"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        t = {name: f"{value['median_ms']:.1f}" for name, value in r["timings"].items()}
        cells = [f"{r['n']:,}", str(r["d"]), str(r["batch"]), t["read"], t["matmul"], t["bare"],
                 *([t.get("faiss", "-")] if has_faiss else []), t["index"], f"{r['index_over_bare']:.2f}",
                 f"{r['index_over_matmul']:.2f}", *([f"{r.get('index_over_faiss', float('nan')):.2f}"] if has_faiss else []),
                 f"{r['index_over_read']:.1f}", "yes" if r["ranks_equal_bare"] else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(grid: list[dict], sweep: list[dict], path: Path) -> None:
    """Time per batch against corpus size (one line per d) and against batch size: index and references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for d in sorted({r["d"] for r in grid}):
        rows = [r for r in grid if r["d"] == d]
        sizes = [r["n"] for r in rows]
        line, = left.plot(sizes, [r["timings"]["index"]["median_ms"] for r in rows], "o-", label=f"index, d={d}")
        left.plot(sizes, [r["timings"]["matmul"]["median_ms"] for r in rows], "--", color=line.get_color(),
                  label=f"bare Q@E.T, d={d}")
    left.set(xscale="log", yscale="log", xlabel="corpus rows N", ylabel="ms per batch",
             title=f"Scoring a batch of {grid[0]['batch']} queries")
    left.legend(fontsize=7)
    if sweep:
        batches = [r["batch"] for r in sweep]
        for name, style in (("index", "o-"), ("matmul", "--"), ("faiss", ":"), ("read", "-.")):
            if all(name in r["timings"] for r in sweep):
                right.plot(batches, [r["timings"][name]["median_ms"] for r in sweep], style, label=name)
        right.set(xscale="log", yscale="log", xlabel="queries per batch B", ylabel="ms per batch",
                  title=f"N = {sweep[0]['n']:,}, d = {sweep[0]['d']}")
        right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 576, 1536])
    parser.add_argument("--batch", type=int, default=64, help="queries per search in the N x d grid")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 64, 256], help="batch sizes of the sweep")
    parser.add_argument("--sweep-size", type=int, default=100_000)
    parser.add_argument("--sweep-dim", type=int, default=576)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per measurement (3 to 50 repeats)")
    parser.add_argument("--faiss", action=argparse.BooleanOptionalAction, default=True, help="also time FAISS flat search")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="storage dtype of the corpus matrix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench_scoring.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.faiss:
        try:
            import faiss

            faiss.cvar.distance_compute_blas_threshold = 16  # BLAS for batches of 16+ queries (default 128,000 in 1.15)
        except ImportError:
            args.faiss = False

    grid = [measure(n, d, args.batch, args.top_k, args, device) for n in args.sizes for d in args.dims]
    print(f"\nCorpus size x dimension, batch {args.batch}, top-{args.top_k}, {args.dtype} on {device}:\n")
    print(table(grid))
    sweep = [measure(args.sweep_size, args.sweep_dim, b, args.top_k, args, device) for b in args.batches]
    if sweep:
        print(f"\nBatch size, N = {args.sweep_size:,}, d = {args.sweep_dim}:\n")
        print(table(sweep))
    target = "index/bare <= 1.2" if device.type == "cpu" else "index/read <= 2"
    worst = max(r["index_over_bare"] if device.type == "cpu" else r["index_over_read"] for r in grid + sweep)
    print(f"\nTarget {target}: worst {worst:.2f} -> {'PASS' if worst <= (1.2 if device.type == 'cpu' else 2.0) else 'MISS'}")
    results = {"config": vars(args), "environment": environment(args.dtype), "grid": grid, "batch_sweep": sweep,
               "target": target, "worst": worst}
    write_json(args.out, results)
    plot(grid, sweep, Path(args.out).with_suffix(".png"))
    return results


if __name__ == "__main__":
    main()
