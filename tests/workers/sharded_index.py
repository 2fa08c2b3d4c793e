"""Run by tests/test_sharded_index.py under ``torchrun``, or in one process with ``--single``:
the same searches on the same data, with the index sharded over the processes or not.

Every process searches with its own queries (rank r holds queries of batch size 5 - 2r); the
single-process run searches the concatenation. A drifting encoder makes rows stale between steps.
Writes one pickle per process with everything the searches returned.
"""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np
import torch
import torch.distributed as dist

from sr3_env import LazyIndex

N, DIM, STEPS = 203, 16, 3  # 203 rows: shards of unequal size


class TableEncoder:
    """``"doc{i}"`` -> a fixed random vector plus a version-dependent drift (distinct scores, no ties)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.base = rng.standard_normal((N, DIM)).astype(np.float32)
        self.drift = rng.standard_normal((8, N, DIM)).astype(np.float32)
        self.dim, self.version = DIM, 0

    def encode_documents(self, texts):
        rows = np.array([int(t[3:]) for t in texts])
        out = self.base[rows] + 0.5 * self.drift[self.version % 8, rows]
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def batch(rank: int, step: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng([rank, step])
    size = 5 - 2 * rank
    gold = [rng.choice(N, size=int(rng.integers(0 if b == 1 else 1, 4)), replace=False) for b in range(size)]
    queries = rng.standard_normal((size, DIM)).astype(np.float32)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True), gold


def run(index: LazyIndex, encoder: TableEncoder, ranks: list[int], k: int) -> list[dict]:
    steps = []
    for step in range(STEPS):
        parts = [batch(r, step) for r in ranks]
        queries = np.concatenate([p[0] for p in parts])
        gold = [g for p in parts for g in p[1]]
        found = index.search(queries, gold, k=k)
        rows = np.arange(step, N, 37)
        steps.append({"top_rows": found.top_rows, "top_scores": found.top_scores, "gold_ranks": found.gold_ranks,
                      "gold_scores": found.gold_scores, "stats": found.stats.as_dict(),
                      "rows_embeddings": index.rows_embeddings(rows).numpy()})
        encoder.version += 1
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--refresh", default="lazy")
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--single", type=int, default=0, help="run in one process, as if there were this many")
    args = parser.parse_args()
    extra = {"refresh_every": 2} if args.refresh == "periodic" else {}
    encoder = TableEncoder()
    texts = [f"doc{i}" for i in range(N)]
    if args.single:
        index = LazyIndex(texts, encoder, refresh=args.refresh, device="cpu", refresh_budget=4, **extra)
        result = run(index, encoder, list(range(args.single)), args.k)
        rank = "single"
    else:
        dist.init_process_group("gloo")
        index = LazyIndex(texts, encoder, refresh=args.refresh, device="cpu", refresh_budget=4,
                          process_group="world", **extra)
        rank = dist.get_rank()
        result = run(index, encoder, [rank], args.k)
        result.append({"rows": (index.shard.start, index.shard.stop), "local_rows": int(index.embeddings.shape[0])})
        dist.destroy_process_group()
    with open(os.path.join(args.out, f"{rank}.pkl"), "wb") as handle:
        pickle.dump(result, handle)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
