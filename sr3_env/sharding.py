"""Splitting the index's rows across the processes of a ``torch.distributed`` group.

Each process holds a contiguous block of rows (`shard_range`). A search needs three collectives,
all on small tensors: the processes' query batches are gathered (every shard scores every query),
the per-shard top-K lists are gathered and merged (`merge_top_k`), and per-shard counts of rows
scoring above each gold document are summed (one all-reduce; docs/scaling.md: the rank decomposes over
shards). Without a group, `Shard` is the whole corpus and every collective is the identity, so the
single-process index runs the very same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def shard_range(num_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """The ``[start, stop)`` rows held by ``rank``: contiguous blocks whose sizes differ by at most one."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a group of {world_size} processes.")
    base, extra = divmod(num_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def merge_top_k(values: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge per-shard top lists: ``values``/``rows`` are (S, B, k_s), best first in each shard;
    returns the (B, k) best values and their rows over all shards (padding: value -inf, row -1)."""
    batch = values.shape[1]
    flat_values = values.permute(1, 0, 2).reshape(batch, -1)
    flat_rows = rows.permute(1, 0, 2).reshape(batch, -1)
    best = torch.topk(flat_values, k, dim=1, sorted=True)
    return best.values, torch.gather(flat_rows, 1, best.indices)


@dataclass(frozen=True)
class Shard:
    """The rows this process holds, and the collectives of its group (identity without one)."""

    num_rows: int
    start: int
    stop: int
    rank: int = 0
    world_size: int = 1
    group: Any = None

    @classmethod
    def of(cls, num_rows: int, group: Any = None) -> "Shard":
        """The shard of this process in ``group`` (a ``torch.distributed`` process group, or
        ``"world"`` for the default group; ``None``: a single process holds every row)."""
        if group is None:
            return cls(num_rows, 0, num_rows)
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("process_group was given but torch.distributed is not initialised: call "
                               "torch.distributed.init_process_group (or start with `accelerate launch` / `torchrun`) "
                               "before building the index, or drop process_group for a single-process index.")
        group = dist.group.WORLD if group == "world" else group
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        if num_rows < world:
            raise ValueError(f"Cannot shard {num_rows} documents over {world} processes: every process needs a row.")
        start, stop = shard_range(num_rows, rank, world)
        return cls(num_rows, start, stop, rank, world, group)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def __len__(self) -> int:
        return self.stop - self.start

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over the group (in place; returns it)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """(S, *shape): every process's ``tensor`` (same shape everywhere), in rank order."""
        if not self.distributed:
            return tensor.unsqueeze(0)
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.stack(parts)

    def all_gather_objects(self, value: Any) -> list[Any]:
        """Every process's picklable ``value``, in rank order."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.group)
        return out

    def gather_rows(self, matrix: torch.Tensor) -> tuple[torch.Tensor, slice]:
        """Stack every process's (B_r, ...) ``matrix`` (B_r may differ) into (sum B_r, ...); also
        return the slice of the stack that holds this process's rows."""
        if not self.distributed:
            return matrix, slice(0, matrix.shape[0])
        sizes = self.all_gather(torch.tensor([matrix.shape[0]], device=matrix.device)).reshape(-1).tolist()
        padded = torch.zeros((max(sizes), *matrix.shape[1:]), dtype=matrix.dtype, device=matrix.device)
        padded[:matrix.shape[0]] = matrix
        stacked = self.all_gather(padded)
        begin = sum(sizes[:self.rank])
        return torch.cat([stacked[r, :n] for r, n in enumerate(sizes)]), slice(begin, begin + sizes[self.rank])
