"""Contrastive warm-up (SFT) of the reasoning embedder: ``sr3 sft``.

Per step: a batch of training queries, one relevant document each; the queries are embedded
(directly, or after a short reasoning the model writes, so that both paths learn) and searched in an `sr3_env.LazyIndex` whose document encoder is the model being
trained, so the top-ranked non-relevant documents are hard negatives under the *current* model
(the index re-encodes the stale rows it touches: lazy refresh); positives and negatives are
embedded; InfoNCE + triplet + the language-model loss on the answer template (+ an optional KL
to the starting model); one optimiser step, after which the model's ``version`` goes up.

The loop reads top to bottom (`train_sft`); batching, negative mining and masks are pure functions.
Under ``accelerate launch`` every process takes its block of each step's batch and DDP averages
the gradients (`sr3_agent.distributed`, docs/scaling.md).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr3_agent.checkpoint import check_resumable, graceful_interrupt, load_latest, save_checkpoint, save_config
from sr3_agent.config import SFTConfig
from sr3_agent.distributed import (Processes, prepare_data_parallel, process_entropy, restore_process_rng,
                                   process_rng_states, seed_process, shard_rows, start_processes, warn_if_uneven)
from sr3_agent.embedder import ReasoningEmbedder, autocast_dtype_for
from sr3_agent.losses import info_nce, kl_to_reference, lm_loss, triplet_margin
from sr3_agent.runlock import holds_run_lock
from sr3_env import LazyIndex, RetrievalDataset, load_dataset

logger = logging.getLogger(__name__)


# -- pure pieces (tested one by one) -------------------------------------------------------------

def batch_query_rows(num_queries: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The query rows of a step: distinct, drawn from a generator seeded by (seed, step), so a
    resumed run sees exactly the batches the uninterrupted one would have."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(num_queries, size=min(batch_size, num_queries), replace=False)


def pick_positives(gold: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One relevant row per query, uniformly among its relevant rows."""
    return np.array([int(rng.choice(rows)) for rows in gold], dtype=np.int64)


def pick_hard_negatives(top_rows: np.ndarray, gold: list[np.ndarray], count: int, num_docs: int,
                        rng: np.random.Generator) -> np.ndarray:
    """(B, count) negatives: sampled among each query's top-ranked non-relevant rows (sampling, not
    the very top, spreads the risk of an unjudged relevant document); random non-relevant rows fill in
    when the top rows hold too few."""
    out = np.empty((len(gold), count), dtype=np.int64)
    for i, (top, relevant) in enumerate(zip(top_rows, gold)):
        if num_docs - len(np.unique(relevant)) < count:
            raise ValueError(f"A query has {len(np.unique(relevant))} relevant documents among {num_docs}: too few "
                             f"others for {count} hard negatives. Lower --hard-negatives or use a larger corpus.")
        candidates = top[~np.isin(top, relevant)]
        picked = list(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
        while len(picked) < count:
            row = int(rng.integers(num_docs))
            if row not in relevant and row not in picked:
                picked.append(row)
        out[i] = picked
    return out


def false_negative_mask(gold: list[np.ndarray], column_rows: np.ndarray) -> torch.Tensor:
    """(B, C) bool: True where column j holds a document relevant to query i and j is not i's label
    (column i). Such columns are not negatives of query i and are left out of its InfoNCE."""
    relevant = np.stack([np.isin(column_rows, rows) for rows in gold])
    np.fill_diagonal(relevant[:, :len(gold)], False)
    return torch.as_tensor(relevant)


def query_sequences(embedder: ReasoningEmbedder, texts: list[str], reason: np.ndarray, max_new_tokens: int,
                    temperature: float) -> list[list[int]]:
    """Token ids of each query's input: prompt + embed token, or (where ``reason``) prompt + a
    reasoning the model writes now + embed token. Every sequence ends with the token."""
    sequences = [ids + [embedder.embed_token_id] for ids in embedder.prompt_ids(texts, embedder.prompts.query)]
    chosen = np.flatnonzero(reason)
    if chosen.size:
        rollout = embedder.generate_reasoning([texts[i] for i in chosen], max_new_tokens=max_new_tokens,
                                              temperature=temperature)
        for row, i in enumerate(chosen):
            sequences[i] = rollout.input_ids[row][rollout.attention_mask[row].bool()].tolist()
    return sequences


def training_embeddings(embedder: ReasoningEmbedder, sequences: list[list[int]], instructions: list[str], *,
                        whole: bool = False) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """(B, D) embeddings and the answer-template LM loss of token sequences that end with the token,
    with gradients, each row prompted by its entry of ``instructions``.

    The rows of each instruction run after its shared prefix, computed once
    (`ReasoningEmbedder.hidden_states_after_prefix`): the same losses and gradients as whole
    sequences, for fewer tokens. With ``whole`` (the KL to a reference needs every position), or
    where that does not apply, the sequences are computed whole and ``(hidden, ids, mask)`` is
    returned as the third item (else None)."""
    groups = {instruction: [i for i, own in enumerate(instructions) if own == instruction]
              for instruction in dict.fromkeys(instructions)}
    parts = None if whole else [embedder.hidden_states_after_prefix([sequences[i] for i in rows], instruction)
                                for instruction, rows in groups.items()]
    if parts is None or any(part is None for part in parts):
        ids, mask = embedder.pad_left(sequences)
        hidden = embedder.hidden_states(ids, mask)
        return embedder.pool(hidden, ids, mask), answer_template_loss(embedder, hidden, ids), (hidden, ids, mask)
    embeddings, lm = [], 0.0
    for (hidden, ids, mask), rows in zip(parts, groups.values()):
        embeddings.append(embedder.pool(hidden, ids, mask))
        lm = lm + answer_template_loss(embedder, hidden, ids) * len(rows) / len(sequences)  # one label per row
    order = torch.as_tensor([i for rows in groups.values() for i in rows], device=embedder.device)
    return torch.cat(embeddings)[torch.argsort(order)], lm, None


def answer_template_loss(embedder: ReasoningEmbedder, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Language-model loss of the answer template: the embed token after each prompt.

    Sequences are left-padded and end with the token, so the last two positions are (end of the
    prompt or of the reasoning, token); only the token is labelled. After a reasoning this teaches
    the model to write the token itself when its analysis is done.
    """
    head = embedder.model.get_output_embeddings()
    logits = head(hidden[:, -2:])  # (B, 2, V): position -2 predicts the token at -1
    labels = input_ids[:, -2:].clone()
    labels[:, 0] = -100
    return lm_loss(logits, labels)


# -- setup ----------------------------------------------------------------------------------------

def training_data(config: SFTConfig) -> RetrievalDataset:
    """The training queries and the mining corpus (a sub-corpus that keeps every relevant document)."""
    dataset = load_dataset(config.dataset, split=config.split)
    if config.num_queries is None and config.corpus_docs is None:
        return dataset
    return dataset.subset(num_queries=config.num_queries, num_docs=config.corpus_docs, seed=config.seed)


def add_lora(model: Any, config: SFTConfig) -> Any:
    from sr3_env.errors import DependencyNotInstalled

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise DependencyNotInstalled("--lora needs peft: `pip install peft`.") from error
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def training_index(data: RetrievalDataset, embedder: ReasoningEmbedder, config: Any,
                   saved: dict[str, Any] | None = None, processes: Processes = Processes()) -> LazyIndex:
    """The lazily refreshed index over the training corpus, encoded by the model being trained;
    ``saved`` (from a checkpoint) restores its rows and their versions instead of encoding them.
    With several processes the rows are sharded: each holds and re-encodes a block of them, and
    searches are collective (every process searches once per step)."""
    index = LazyIndex(data.documents, embedder, refresh=config.refresh, refresh_budget=config.refresh_budget,
                      refresh_every=config.refresh_every if config.refresh == "periodic" else None,
                      device=embedder.device, embeddings=None if saved is None else saved["embeddings"],
                      process_group="world" if processes.distributed else None)
    if saved is not None:
        index.row_versions[:] = saved["row_versions"][index.shard.start:index.shard.stop]
    return index


def index_state(index: LazyIndex, processes: Processes = Processes()) -> dict[str, Any] | None:
    """What a checkpoint keeps of the index: all its rows and the model version that made each, in
    one piece whatever the number of processes (collective: the main process gathers the shards and
    gets the state; the others get None)."""
    shards = processes.gather_to_main(index.state_dict())
    if shards is None:
        return None
    return {"embeddings": torch.cat([shard["embeddings"] for shard in shards]),
            "row_versions": np.concatenate([shard["row_versions"] for shard in shards])}


def make_writer(output_dir: Path, processes: Processes = Processes()) -> Any:
    """A TensorBoard writer on the main process; None on the others (they write nothing)."""
    if not processes.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(output_dir / "tensorboard"))


def write_scalars(writer: Any, scalars: dict[str, float], step: int) -> None:
    if writer is not None:
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)


def close_writer(writer: Any) -> None:
    if writer is not None:
        writer.close()


def step_scalars(total: torch.Tensor, losses: dict[str, torch.Tensor], queries: torch.Tensor, positives: torch.Tensor,
                 negatives: torch.Tensor, found: Any, config: SFTConfig, *, lr: float,
                 seconds: tuple[float, float]) -> dict[str, float]:
    """One step's TensorBoard scalars (keys explained in docs/metrics.md), of this process's block."""
    with torch.no_grad():
        cos_positive = (queries * positives).sum(-1).mean().item()
        cos_negative = (queries.unsqueeze(1) * negatives.view(len(queries), config.hard_negatives, -1)).sum(-1).mean().item() \
            if config.hard_negatives else float("nan")
    scalars = {"losses/total": total.item(), **{f"losses/{k}": v.item() for k, v in losses.items()},
               "charts/learning_rate": lr, "charts/gold_rank": float(np.mean([r.mean() for r in found.gold_ranks])),
               "charts/cos_positive": cos_positive, "charts/cos_hard_negative": cos_negative,
               "index/rows_reencoded": found.stats.rows_reencoded, "index/stale_fraction": found.stats.stale_fraction,
               "time/mining_s": seconds[0], "time/step_s": seconds[1]}
    return scalars


# -- the loop -------------------------------------------------------------------------------------

@holds_run_lock  # one run per output folder (sr3_agent.runlock)
def train_sft(config: SFTConfig, *, embedder: ReasoningEmbedder | None = None,
              dataset: RetrievalDataset | None = None, progress: bool = True) -> ReasoningEmbedder:
    """Run SFT as configured; returns the trained embedder (also saved to ``output_dir/final``).

    ``embedder`` and ``dataset`` override ``config.model`` and the configured data (tests pass a tiny model).
    """
    from tqdm.auto import trange

    output_dir = Path(config.output_dir)
    processes = start_processes(config.device)  # one process unless started by accelerate launch / torchrun
    torch.manual_seed(config.seed)
    data = dataset if dataset is not None else training_data(config)
    gold = [data.relevant_rows(q)[0] for q in data.query_ids]
    embedder = embedder or ReasoningEmbedder.from_pretrained(config.model, device=processes.device(config.device))
    embedder.max_length = config.max_length
    embedder.autocast_dtype = autocast_dtype_for(config.precision, embedder.device)  # bf16 mixed precision, or None
    if config.lora:
        embedder.model = add_lora(embedder.model, config)
    prepare_data_parallel(embedder, processes, head_in_loss=config.lm_weight > 0 or config.kl_weight > 0)
    seed_process(config.seed, processes)
    reference = copy.deepcopy(embedder.model).eval().requires_grad_(False) if config.kl_weight > 0 else None
    parameters = [p for p in embedder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    embedder.attach_optimizer(optimizer)

    start, index_rows = 0, None
    if config.resume:
        check_resumable(output_dir, config)
        state = load_latest(output_dir)
        embedder.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        embedder.version, start, index_rows = state["version"], state["step"], state["index"]
        restore_process_rng(state, processes)
        logger.info("resuming from step %d", start)
    elif processes.is_main:
        save_config(output_dir, config)

    index = training_index(data, embedder, config, index_rows, processes)
    writer = make_writer(output_dir, processes)
    embedder.model.train()
    warn_if_uneven(min(config.batch_size, len(data.query_ids)), processes)

    bar = trange(start, config.steps, desc="sft", disable=not (progress and processes.is_main), initial=start,
                 total=config.steps)
    with graceful_interrupt() as stop:
        for step in bar:
            timer = time.perf_counter()
            rng = np.random.default_rng(process_entropy([config.seed, step, 1], processes))
            # the step's batch, the same on every process; each takes its block of it
            rows = shard_rows(batch_query_rows(len(data.query_ids), config.batch_size, step, config.seed), processes)
            batch_gold = [gold[r] for r in rows]

            # 1. queries, embedded directly or after a reasoning the model writes (with gradients)
            reason = rng.random(len(rows)) < config.reasoning_fraction
            q_sequences = query_sequences(embedder, [data.query_texts[r] for r in rows], reason,
                                          config.reasoning_tokens, config.reasoning_temperature)
            q_instructions = [embedder.prompts.reasoning if r else embedder.prompts.query for r in reason]
            queries, q_lm, q_whole = training_embeddings(embedder, q_sequences, q_instructions,
                                                         whole=reference is not None)  # (B, D)

            # 2. hard negatives under the current model (the index re-encodes the stale rows it touches)
            found = index.search(queries.detach(), batch_gold, k=config.mine_top_k)
            positives_rows = pick_positives(batch_gold, rng)
            negative_rows = pick_hard_negatives(found.top_rows, batch_gold, config.hard_negatives, len(index), rng)
            mined = time.perf_counter()

            # 3. positives then negatives, embedded as documents (with gradients)
            column_rows = np.concatenate([positives_rows, negative_rows.reshape(-1)])
            d_sequences = [ids + [embedder.embed_token_id] for ids in
                           embedder.prompt_ids([data.documents[r] for r in column_rows], embedder.prompts.document)]
            documents, d_lm, _ = training_embeddings(embedder, d_sequences, [embedder.prompts.document] * len(d_sequences))
            # documents: (B + B*H, D)
            positives, negatives = documents[:len(rows)], documents[len(rows):]

            # 4. losses, one optimiser step (the model's version goes up; DDP averages the gradients)
            losses = {"info_nce": info_nce(queries, positives, negatives, temperature=config.temperature,
                                           false_negative_mask=false_negative_mask(batch_gold, column_rows).to(queries.device))}
            if config.triplet_weight > 0:
                losses["triplet"] = triplet_margin(queries, positives, negatives.view(len(rows), config.hard_negatives, -1),
                                                   margin=config.margin)
            if config.lm_weight > 0:
                losses["lm"] = 0.5 * (q_lm + d_lm)
            if reference is not None:  # every query position: computed whole
                q_hidden, q_ids, q_mask = q_whole
                head = embedder.model.get_output_embeddings()
                with torch.no_grad():
                    ref_logits = reference(input_ids=q_ids, attention_mask=q_mask,
                                           position_ids=(q_mask.cumsum(1) - 1).clamp(min=0)).logits
                losses["kl"] = kl_to_reference(head(q_hidden), ref_logits, q_mask.bool())
            weights = {"info_nce": config.infonce_weight, "triplet": config.triplet_weight, "lm": config.lm_weight,
                       "kl": config.kl_weight}
            total = sum(weights[name] * value for name, value in losses.items())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            schedule.step()
            done = step + 1

            # 5. logs and checkpoints, written by the main process (a first Ctrl-C stops here, after a checkpoint)
            bar.set_postfix(loss=f"{total.item():.3f}", rank=f"{np.mean([r.mean() for r in found.gold_ranks]):.1f}")
            if done % config.log_every == 0 or done == config.steps:
                scalars = step_scalars(total, losses, queries, positives, negatives, found, config,
                                       lr=schedule.get_last_lr()[0], seconds=(mined - timer, time.perf_counter() - timer))
                write_scalars(writer, processes.mean(scalars), done)
            stopping = processes.any(stop.requested)  # every process stops after the same step
            if stopping or done % config.save_every == 0 or done == config.steps:
                state = {"model": embedder.model.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "version": embedder.version, "index": index_state(index, processes),
                         **process_rng_states(processes)}
                if processes.is_main:
                    save_checkpoint(output_dir, done, state)
            if stopping:
                logger.warning("stopped after step %d; continue with --resume", done)
                close_writer(writer)
                return embedder
    close_writer(writer)
    embedder.model.eval()
    if processes.is_main:
        embedder.save_pretrained(output_dir / "final")
    processes.wait()
    return embedder
