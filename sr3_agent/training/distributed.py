"""Data-parallel training (DDP) of `sr3 sft` and `sr3 rl` across processes started by ``accelerate launch``.

One process per device (or per CPU group); every process holds the whole model and takes its own
share of each step's queries; after the backward pass DDP averages the gradients, so every
process takes the same optimiser step and the weights stay identical (and so does the model's
``version``). docs/scaling.md gives the commands.

- `start_processes`: join the process group when started by ``accelerate launch`` / ``torchrun``
  (``WORLD_SIZE`` > 1); otherwise a single process, and accelerate is not even imported.
- `shard_rows`: the rows of a step's batch that this process takes (step-seeded batch, split by rank).
- `prepare_data_parallel`: route `ReasoningEmbedder.hidden_states` through a DDP-wrapped module.
- `Processes`: rank, world size and the few collectives the loops need (means for the logs, an
  agreed stop flag, per-process random states for checkpoints); each is the identity in one process.

Why a wrapper module: `ReasoningEmbedder.hidden_states` calls the decoder directly, which would
bypass a DDP-wrapped causal LM's ``forward``, and DDP only prepares its gradient averaging in its
own ``forward``. `HiddenStates` holds the whole causal LM (so the LM head's parameters are DDP's
too: the losses apply the head to the hidden states outside the forward, and the gradient that
reaches it is averaged like any other; tests/test_distributed_training.py checks it).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from sr3_agent.config import ConfigError
from sr3_agent.training.rng import rng_state, set_rng_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processes:
    """This process among the data-parallel ones; the default is a single process (rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    accelerator: Any = None  #: the ``accelerate.Accelerator`` when there are several processes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes logs, checkpoints and the final model."""
        return self.rank == 0

    def device(self, requested: str | None) -> str | torch.device | None:
        """Where this process's model lives: the configured device, or this process's own device."""
        return self.accelerator.device if self.distributed else requested

    def mean(self, scalars: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes (collective: every process calls it with the same keys)."""
        if not self.distributed:
            return scalars
        import torch.distributed as dist

        keys = sorted(scalars)
        values = torch.tensor([float(scalars[k]) for k in keys], dtype=torch.float64, device=self.accelerator.device)
        dist.all_reduce(values)
        return dict(zip(keys, (values / self.world_size).tolist()))

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any (collective): the processes stop together."""
        if not self.distributed:
            return bool(flag)
        import torch.distributed as dist

        value = torch.tensor([int(bool(flag))], device=self.accelerator.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: Any) -> list[Any]:
        """Every process's picklable ``value``, in rank order (collective)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def gather_to_main(self, value: Any) -> list[Any] | None:
        """Every process's picklable ``value`` in rank order on the main process; None on the others (collective)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def wait(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            self.accelerator.wait_for_everyone()


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``, set by accelerate launch and torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of the launched processes (``RANK``), or a process started without a launcher."""
    return int(os.environ.get("RANK", "0")) == 0


def start_processes(device: str | None = None) -> Processes:
    """Join the data-parallel processes when launched as several, else a single `Processes()`.

    ``device="cpu"``, or no CUDA, selects the gloo backend (accelerate's multi-CPU mode); with
    CUDA each process takes the GPU of its local rank (NCCL). Only DDP is supported: a DeepSpeed
    or FSDP launch is refused with a message saying what to use instead.
    """
    if launched_world_size() <= 1:
        return Processes()
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import DistributedType

    cpu = device == "cpu" or not torch.cuda.is_available()
    # no buffer broadcast in forward: processes may run different numbers of forward passes (index
    # re-encoding, evaluation), and a collective in forward would then wait forever
    accelerator = Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
    supported = (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if accelerator.distributed_type not in supported:
        raise ConfigError(f"sr3 sft / sr3 rl train data-parallel with DDP only, but accelerate is set up for "
                          f"{accelerator.distributed_type.value}. Launch with `accelerate launch --multi_gpu "
                          "--num_processes N ...` (or answer 'multi-GPU' / 'multi-CPU' in `accelerate config`); "
                          "for DeepSpeed ZeRO use TRL's GRPOTrainer with sr3_agent.RetrievalReward (docs/scaling.md).")
    if accelerator.num_processes != launched_world_size():
        raise ConfigError(f"The launcher started {launched_world_size()} processes but accelerate joined "
                          f"{accelerator.num_processes}. On a machine without a GPU, pass --device cpu.")
    if device not in (None, "cpu", "cuda"):
        logger.warning("--device %s is ignored with several processes: each uses %s", device, accelerator.device)
    return Processes(rank=accelerator.process_index, world_size=accelerator.num_processes, accelerator=accelerator)


def shard_rows(rows: np.ndarray, processes: Processes) -> np.ndarray:
    """The part of a step's batch that this process takes: contiguous blocks, in rank order, whose
    sizes differ by at most one (so the union over the processes is the whole batch).

    Every process draws the same step-seeded batch (`sr3_agent.training.batch_query_rows`) and keeps its
    block, so ``batch_size`` / ``queries_per_step`` stay the total per optimiser step whatever the
    number of processes, and a resumed run sees the same blocks.
    """
    if len(rows) < processes.world_size:
        raise ConfigError(f"{len(rows)} queries per step cannot be shared by {processes.world_size} processes: "
                          f"each needs at least one. Raise the batch (--batch-size / --queries-per-step) to a "
                          f"multiple of {processes.world_size}, or start fewer processes.")
    return np.array_split(np.asarray(rows), processes.world_size)[processes.rank]


def warn_if_uneven(batch: int, processes: Processes) -> None:
    """DDP averages the processes' gradients with equal weights; with unequal blocks a query of a
    smaller block weighs a little more than one of a larger block."""
    if processes.distributed and batch % processes.world_size and processes.is_main:
        logger.warning("%d queries per step over %d processes: blocks of unequal size (each process's gradient "
                       "counts equally). A multiple of %d gives every query the same weight.",
                       batch, processes.world_size, processes.world_size)


def process_entropy(entropy: Sequence[int], processes: Processes) -> list[int]:
    """A seed for ``np.random.default_rng``: ``entropy`` itself in one process (the single-process
    run is unchanged), with the rank appended when there are several (each draws its own)."""
    return [*entropy, processes.rank] if processes.distributed else list(entropy)


def seed_process(seed: int, processes: Processes) -> None:
    """Give each process its own torch random stream (reasoning sampling) once the weights are
    shared; one process keeps the stream ``torch.manual_seed(seed)`` started."""
    if processes.distributed:
        torch.manual_seed(int(np.random.SeedSequence([seed, processes.rank]).generate_state(1)[0]))


def process_rng_states(processes: Processes) -> dict[str, Any]:
    """For a checkpoint (collective): every process's random states, so that each resumes its own
    stream (the checkpoint's ``rng`` holds the main process's only). Nothing in one process."""
    if not processes.distributed:
        return {}
    return {"process_rng": processes.gather(rng_state())}


def restore_process_rng(state: dict[str, Any], processes: Processes) -> None:
    """After `sr3_agent.training.checkpoint.load_latest`: give each process back its own random states."""
    if not processes.distributed:
        return
    saved = state.get("process_rng")
    if saved is not None and len(saved) == processes.world_size:
        set_rng_state(saved[processes.rank])
    elif processes.is_main:
        logger.warning("the checkpoint was written by %s process(es), this run has %d: each process's batch block "
                       "and random stream differ from an uninterrupted run", len(saved) if saved else 1,
                       processes.world_size)


# -- the model ----------------------------------------------------------------------------------

class HiddenStates(torch.nn.Module):
    """``forward(input_ids, attention_mask, position_ids)`` -> (B, T, H) final-layer hidden states.

    Holds the whole causal LM (peft-wrapped or not), so that a DDP wrapper of this module
    averages the gradients of every trainable parameter, the LM head's included.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=False).last_hidden_state


def head_is_tied(model: torch.nn.Module) -> bool:
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    return head is not None and head.weight is embeddings.weight


def prepare_data_parallel(embedder: Any, processes: Processes, *, head_in_loss: bool = True) -> None:
    """Wrap the embedder's model in DDP (through ``accelerator.prepare``) and make
    `ReasoningEmbedder.hidden_states` go through it whenever gradients are on. Call it before
    building the optimiser. Does nothing in a single process.

    ``head_in_loss=False`` says that no loss uses the LM head: an untied head is then frozen (it
    would get no gradient anyway, and DDP requires every trainable parameter to get one each step).
    """
    if not processes.distributed:
        return
    if not head_in_loss and not head_is_tied(embedder.model) and embedder.model.get_output_embeddings() is not None:
        embedder.model.get_output_embeddings().requires_grad_(False)
    with warnings.catch_warnings():  # torch >= 2.13 renames broadcast_buffers (same meaning for False)
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*is deprecated", category=FutureWarning)
        embedder.parallel_forward = processes.accelerator.prepare(HiddenStates(embedder.model))
