"""A training run's set-up and the end of each of its steps, for any loop (`train_sft`, `train_rl`, the next one).

`start_run` does, in this order (the order fixes the random streams, so that a run repeats to the
digit): the processes and the seed, the data, the model and its precision, LoRA, activation
checkpointing, data parallelism, the frozen reference (the starting model, when the loss has a KL
term), the optimiser and its warm-up, resumption from the latest checkpoint, the lazily refreshed
index over the training corpus, and the TensorBoard writer. A loop then keeps only its algorithm:

    run = start_run(config, embedder=embedder, dataset=dataset)
    with graceful_interrupt() as stop:
        for step in run.steps("sft", progress):
            ...                                   # the algorithm: batch, losses
            run.update(total, losses, step + 1)   # backward, then the optimiser's step if the gradients are finite
            if run.end_step(step + 1, scalars, stop):
                return run.embedder               # stopped (Ctrl-C, SIGTERM): a checkpoint was written
    return run.finish()

`Run.update` refuses a step whose gradients are not finite (`check_finite_gradients`) before it changes a
weight; `Run.end_step` writes the step's scalars when due, evaluates on the dev split when due (and
`start_run` before the first step: the starting model is a candidate too), saves a checkpoint when due and
says whether the loop stops; `Run.finish` puts back the best evaluated step's weights
(`sr3_agent.training.selection`), records its way to serve and saves the final model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sr3_agent.training.checkpoint import check_resumable, load_latest, save_config
from sr3_agent.training.distributed import (Processes, prepare_data_parallel, process_rng_states, restore_process_rng,
                                   seed_process, start_processes)
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.model.precision import autocast_dtype_for
from sr3_agent.training.selection import DevEvaluator, Selection, dev_set
from sr3_agent.training.parts import (add_lora, checkpoint_or_stop, close_writer, enable_activation_checkpointing, finish,
                                index_state, make_writer, training_data, training_index, write_scalars)
from sr3_env import LazyIndex, RetrievalDataset
from sr3_env.errors import Sr3Error

logger = logging.getLogger(__name__)


def frozen_reference(embedder: ReasoningEmbedder, config: Any) -> ReasoningEmbedder | None:
    """The starting model for a KL or anchor term: a frozen copy, or None with LoRA (the loop then disables the
    policy's adapters, which gives the starting model without a second copy) or without such a term."""
    if (config.kl_weight <= 0 and getattr(config, "anchor_weight", 0) <= 0) or config.lora:
        return None
    import copy

    reference = ReasoningEmbedder(copy.deepcopy(embedder.model).eval().requires_grad_(False), embedder.tokenizer,
                                  prompts=embedder.prompts, max_length=embedder.max_length)
    reference.autocast_dtype = embedder.autocast_dtype
    return reference


def warmup_schedule(optimizer: torch.optim.Optimizer, config: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over ``warmup_fraction`` of the steps (at least one step when the fraction is
    above 0), then the constant learning rate."""
    warmup = max(1, int(config.steps * config.warmup_fraction)) if config.warmup_fraction > 0 else 0
    if warmup == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))


@dataclass
class Run:
    """What a loop works with (see the module docstring); `start_run` builds it."""

    config: Any
    output_dir: Path
    processes: Processes
    data: RetrievalDataset
    embedder: ReasoningEmbedder
    reference: ReasoningEmbedder | None
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    start: int
    index: LazyIndex
    writer: Any
    evaluator: DevEvaluator | None = None  #: scores the model on the dev split (None: no evaluation)
    selection: Selection | None = None  #: the best evaluated step so far
    bar: Any = None

    def steps(self, name: str, progress: bool = True) -> Iterator[int]:
        """The steps still to run (from ``start`` on a resumed run), with a progress bar on the main process."""
        from tqdm.auto import trange

        self.bar = trange(self.start, self.config.steps, desc=name, initial=self.start, total=self.config.steps,
                          disable=not (progress and self.processes.is_main))
        return iter(self.bar)

    def state(self) -> dict[str, Any]:
        """A checkpoint's contents (collective: the index's shards are gathered)."""
        return {"model": self.embedder.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "version": self.embedder.version,
                "index": index_state(self.index, self.processes), **process_rng_states(self.processes)}

    def update(self, total: torch.Tensor, losses: dict[str, torch.Tensor], done: int) -> None:
        """Step ``done``'s optimiser update on the loss ``total`` (``losses``: its terms, for the error message):
        backward, then the step and the schedule's, unless a gradient is NaN or infinite (`check_finite_gradients`)."""
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        check_finite_gradients(self.optimizer, {"total": total, **losses}, done, self.output_dir)
        self.optimizer.step()
        self.schedule.step()

    def end_step(self, done: int, scalars: Callable[[], dict[str, float]], stop: Any) -> bool:
        """After step ``done``: the scalars (means over the processes) when a log is due, a checkpoint
        when one is due; True when the loop must stop now (the writer is then closed)."""
        config = self.config
        if done % config.log_every == 0 or done == config.steps:
            write_scalars(self.writer, self.processes.mean(scalars()), done)
        if self.evaluator is not None and (done % config.eval_every == 0 or done == config.steps):
            self.evaluate(done)
        if checkpoint_or_stop(self.output_dir, done, config.steps, config.save_every, self.state, stop, self.processes):
            close_writer(self.writer)
            return True
        return False

    def evaluate(self, done: int) -> None:
        """Score the model after step ``done`` on the dev split (0: the starting model), log it and offer it to the
        selection (main process only: the others wait for nothing, as no collective runs here)."""
        scores = self.evaluator(self.embedder, done)
        write_scalars(self.writer, scores.scalars(), done)
        self.selection.offer(scores, self.embedder)

    def finish(self) -> ReasoningEmbedder:
        """All steps ran: the best evaluated step's weights put back (`Selection.restore`; without evaluations the
        last step's), its way to serve recorded, and the model saved as ``output_dir/final``."""
        if self.selection is not None and self.selection.best is not None:
            logger.info("%s", self.selection.restore(self.embedder))
            self.embedder.selection = self.selection.record(self.evaluator.fingerprint if self.evaluator else None)
        else:  # trained without a dev evaluation: what an earlier stage chose no longer describes this model
            self.embedder.selection = None
        return finish(self.embedder, self.output_dir, self.writer, self.processes)


class TrainingDiverged(Sr3Error, FloatingPointError):
    """A step's loss or gradients are NaN or infinite: the step was refused before any weight changed."""


def check_finite_gradients(optimizer: torch.optim.Optimizer, losses: dict[str, Any], done: int, output_dir: Path) -> None:
    """Raise `TrainingDiverged` when the gradients of ``optimizer``'s parameters are not all finite (after
    DDP's averaging, so every process decides the same); ``losses`` and ``done`` (the step) go into the message.

    Called between ``backward`` and ``optimizer.step``: a NaN never reaches the weights, the optimiser's
    moments or a checkpoint, and the latest checkpoint stays the last good state."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        return
    values = ", ".join(f"{name} {float(torch.as_tensor(value).detach()):.4g}" for name, value in losses.items())
    raise TrainingDiverged(
        f"Step {done}: the gradients are NaN or infinite (losses: {values}); the step was not applied, so the weights "
        f"and the latest checkpoint in {output_dir} are the last good ones. Usual causes: a learning rate too high for "
        "this model (try half of --learning-rate; in sr3 train, of that stage's --sft-, --rs- or --rl-learning-rate), "
        "bf16 overflow (try --precision fp32), or a starting model that already holds NaN weights. Change the setting and start again from the latest checkpoint's model or the "
        "starting model.")


def start_run(config: Any, *, embedder: ReasoningEmbedder | None = None, dataset: RetrievalDataset | None = None,
              dev: RetrievalDataset | None = None, ways: tuple[str, ...] = ("direct",), head_in_loss: bool = True) -> Run:
    """Set up a run of ``config`` (a `RunConfig`), in the order of the module docstring.

    ``embedder``, ``dataset`` and ``dev`` override ``config.model``, the configured data and its dev split (tests
    pass tiny ones; a given ``dataset`` without ``dev`` is not evaluated); ``ways``: the query ways the dev
    evaluations score; ``head_in_loss``: whether the loss reads the LM head (data parallelism needs to know)."""
    output_dir = Path(config.output_dir)
    processes = start_processes(config.device)  # one process unless started by accelerate launch / torchrun
    torch.manual_seed(config.seed)
    data = dataset if dataset is not None else training_data(config)
    embedder = embedder or ReasoningEmbedder.from_pretrained(config.model, device=processes.device(config.device))
    embedder.max_length = config.max_length
    embedder.autocast_dtype = autocast_dtype_for(config.precision, embedder.device)  # bf16 mixed precision, or None
    embedder.generation_cache = config.generation_cache  # on CUDA by default a static cache, compiled
    if getattr(config, "latent_tokens", 0):  # before LoRA: new embedding rows, trained with the rest
        embedder.add_latent_tokens(config.latent_tokens)
    if config.lora:
        embedder.model = add_lora(embedder.model, config, trainable_tokens=embedder.latent_token_ids or None)
    if config.activation_checkpointing:
        enable_activation_checkpointing(embedder.model)
    prepare_data_parallel(embedder, processes, head_in_loss=head_in_loss)
    seed_process(config.seed, processes)
    reference = frozen_reference(embedder, config)
    parameters = [p for p in embedder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = warmup_schedule(optimizer, config)
    embedder.attach_optimizer(optimizer)

    start, index_rows = 0, None
    if config.resume:
        check_resumable(output_dir, config)
        state = load_latest(output_dir)
        embedder.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "schedule" in state:  # checkpoints of sr3 rl before 0.1.0 kept none (its rate was constant)
            schedule.load_state_dict(state["schedule"])
        embedder.version, start, index_rows = state["version"], state["step"], state["index"]
        restore_process_rng(state, processes)
        logger.info("resuming from step %d", start)
    if processes.is_main:  # on resumption too: the folder and the steps it now runs to
        save_config(output_dir, config)
    index = training_index(data, embedder, config, index_rows, processes)
    writer = make_writer(output_dir, processes)
    run = Run(config, output_dir, processes, data, embedder, reference, optimizer, schedule, start, index, writer)
    dev = dev if dev is not None or dataset is not None else dev_set(config) if config.eval_every > 0 else None
    if config.eval_every > 0 and processes.is_main and dev is not None:
        run.evaluator = DevEvaluator(dev, ways, reasoning_tokens=getattr(config, "reasoning_tokens", 48),
                                     feedback_k=getattr(config, "feedback_k", 3))
        run.selection = Selection.load(output_dir, config.select_by, config.min_token_rate)
        if start == 0:  # the starting model is a candidate: a stage that does not beat it hands it on
            known = run.evaluator.known(embedder)  # scored by the stage that made it, on this dev set: not again
            if known is None:
                run.evaluate(0)
            else:
                write_scalars(writer, known.scalars(), 0)
                run.selection.offer(known, embedder)
    return run
