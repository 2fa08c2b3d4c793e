"""Contrastive warm-up (SFT) of the reasoning embedder: ``sr3 sft``.

Per step: a batch of training queries, one relevant document each; the queries are embedded
(directly, or with ``latent_tokens`` think tokens before the token, or after a short reasoning the model
writes, so that both paths learn) and searched in an `sr3_env.LazyIndex` whose document encoder is the model being
trained, so the top-ranked non-relevant documents are hard negatives under the *current* model
(the index re-encodes the stale rows it touches: lazy refresh); positives and negatives are
embedded; InfoNCE + triplet + the language-model loss on the answer template (+ an optional KL
to the starting model); one optimiser step, after which the model's ``version`` goes up.

The loop reads top to bottom (`train_sft`); batching, negative mining and masks are pure functions.
Under ``accelerate launch`` every process takes its block of each step's batch and DDP averages
the gradients (`sr3_agent.training.distributed`, docs/scaling.md).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sr3_agent.training.checkpoint import graceful_interrupt
from sr3_agent.config import SFTConfig
from sr3_agent.training.distributed import Processes, process_entropy, shard_rows, warn_if_uneven
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.training.harness import start_run
from sr3_agent.training.losses import anchor_loss, info_nce, kl_to_reference, lm_loss, triplet_margin
from sr3_agent.training.rejection import Picked, pick_reasonings
from sr3_agent.training.runlock import holds_run_lock
from sr3_agent.training.selection import stage_ways
from sr3_agent.training.parts import batch_query_rows, best_ranks, false_negative_mask, feedback_query_texts
from sr3_env import RetrievalDataset



# -- pure pieces (tested one by one) -------------------------------------------------------------

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


def query_sequences(embedder: ReasoningEmbedder, texts: list[str], reasonings: list[list[int] | None],
                    latent: list[int] | None = None, thinks: Sequence[bool] | None = None
                    ) -> tuple[list[list[int]], list[str]]:
    """Token ids of each query's input and its instruction: prompt + ``latent`` (the think tokens of the
    latent way, none by default) + embed token where its reasoning is None, else reasoning prompt + the
    reasoning + embed token. ``thinks[i]`` False keeps query i's direct row without the think tokens (the
    plain direct layout; default: every direct row gets them). Every sequence ends with the token."""
    sequences, instructions = [], []
    direct = iter(embedder.prompt_ids(texts, embedder.prompts.query))
    reasoned = iter(embedder.prompt_ids([t for t, r in zip(texts, reasonings) if r is not None], embedder.prompts.reasoning))
    for i, reasoning in enumerate(reasonings):
        think = list(latent or []) if thinks is None or thinks[i] else []
        prompt = next(direct) + think if reasoning is None else next(reasoned) + list(reasoning)
        sequences.append(prompt + [embedder.embed_token_id])
        instructions.append(embedder.prompts.query if reasoning is None else embedder.prompts.reasoning)
    return sequences, instructions


def latent_rows(count: int, fraction: float, entropy: list[int], processes: Processes) -> np.ndarray | None:
    """Which of a batch's ``count`` queries take the latent layout where embedded directly (a share ``fraction``;
    None: all, drawing nothing). Their own random stream, so the step's other draws do not move with it."""
    if fraction >= 1:
        return None
    return np.random.default_rng(process_entropy(entropy, processes)).random(count) < fraction


def answer_lengths(reasonings: list[list[int] | None], *, learn_reasoning: bool, direct: bool = True) -> list[int]:
    """Tokens at the end of each query sequence that the language-model loss labels: the embed token,
    and before it the reasoning where ``learn_reasoning`` (kept by rejection sampling); a row embedded
    directly (no reasoning) is labelled only with ``direct`` (else 0 tokens)."""
    return [(1 if direct else 0) if r is None else 1 + (len(r) if learn_reasoning else 0) for r in reasonings]


def training_embeddings(embedder: ReasoningEmbedder, sequences: list[list[int]], instructions: list[str], *,
                        labelled: list[int] | None = None, whole: bool = False, train_head: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """(B, D) embeddings and the answer LM loss of token sequences that end with the token, with
    gradients, each row prompted by its entry of ``instructions``; ``labelled[i]`` trailing tokens of
    row i are labelled (default 1: the token).

    The rows of each instruction run after its shared prefix, computed once
    (`ReasoningEmbedder.hidden_states_after_prefix`): the same losses and gradients as whole
    sequences, for fewer tokens. With ``whole`` (the KL to a reference needs every position), or
    where that does not apply, the sequences are computed whole and ``(hidden, ids, mask)`` is
    returned as the third item (else None). ``train_head``: as in `answer_terms`."""
    labelled = labelled or [1] * len(sequences)
    groups = {instruction: [i for i, own in enumerate(instructions) if own == instruction]
              for instruction in dict.fromkeys(instructions)}
    parts = None if whole else [embedder.hidden_states_after_prefix([sequences[i] for i in rows], instruction)
                                for instruction, rows in groups.items()]
    if parts is None or any(part is None for part in parts):
        ids, mask = embedder.pad_left(sequences)
        hidden = embedder.hidden_states(ids, mask)
        return (embedder.pool(hidden, ids, mask), answer_template_loss(embedder, hidden, ids, labelled, train_head),
                (hidden, ids, mask))
    embeddings, terms = [], []
    for (hidden, ids, mask), rows in zip(parts, groups.values()):
        embeddings.append(embedder.pool(hidden, ids, mask))
        terms.append(answer_terms(embedder, hidden, ids, [labelled[i] for i in rows], train_head))
    order = torch.as_tensor([i for rows in groups.values() for i in rows], device=embedder.device)
    return torch.cat(embeddings)[torch.argsort(order)], combined_answer_loss(terms), None


def answer_template_loss(embedder: ReasoningEmbedder, hidden: torch.Tensor, input_ids: torch.Tensor,
                         labelled: list[int] | None = None, train_head: bool = True) -> torch.Tensor:
    """Language-model loss of the answer: the last ``labelled[i]`` tokens of row i (default 1: the
    embed token after each prompt or reasoning).

    Sequences are left-padded and end with the token, so the answer is the tail of each row. The
    loss is the mean over the rows of the token's cross-entropy, plus, where reasonings are labelled
    (kept by rejection sampling), the mean over their tokens: the token weighs as much as a whole
    reasoning, so that the model learns to stop and write it rather than end its turn.
    """
    return combined_answer_loss([answer_terms(embedder, hidden, input_ids, labelled, train_head)])


def answer_terms(embedder: ReasoningEmbedder, hidden: torch.Tensor, input_ids: torch.Tensor,
                 labelled: list[int] | None = None, train_head: bool = True) -> tuple[torch.Tensor, int, torch.Tensor, int]:
    """The sums and counts `answer_template_loss` combines, so that batches computed in parts
    (`training_embeddings`) give the loss of the whole: (token NLL sum, rows, reasoning NLL sum,
    reasoning tokens). Without ``train_head`` the output layer's weights are held out of the loss's gradient
    (the layers below still learn): where they are tied to the input embeddings, the embed token's output row is
    its input row, at which every embedding is read."""
    labelled = labelled or [1] * len(input_ids)
    rows = sum(n > 0 for n in labelled)  # a row labelled with 0 tokens is left out
    width = min(max(labelled) + 1, input_ids.shape[1])
    head = embedder.model.get_output_embeddings()
    tail = hidden[:, -width:]
    logits = head(tail) if train_head else torch.nn.functional.linear(  # (B, width, V): t predicts t + 1
        tail, head.weight.detach(), None if head.bias is None else head.bias.detach())
    token_labels = input_ids[:, -width:].clone()
    token_labels[:, :-1] = -100
    token_labels[torch.as_tensor(labelled, device=input_ids.device) == 0, -1] = -100
    token_sum = lm_loss(logits, token_labels) * rows
    reasoning_labels = input_ids[:, -width:].clone()
    start = width - torch.as_tensor(labelled, device=input_ids.device).view(-1, 1)
    reasoning_labels[torch.arange(width, device=input_ids.device).view(1, -1) < start] = -100
    reasoning_labels[:, 0] = reasoning_labels[:, -1] = -100
    count = sum(max(n - 1, 0) for n in labelled)
    reasoning_sum = lm_loss(logits, reasoning_labels) * count if count else token_sum * 0
    return token_sum, rows, reasoning_sum, count


def combined_answer_loss(terms: list[tuple[torch.Tensor, int, torch.Tensor, int]]) -> torch.Tensor:
    """Token mean over all labelled rows, plus the reasoning-token mean over all labelled reasoning tokens (if
    any); an exact zero that keeps the graph where nothing is labelled."""
    rows = sum(t[1] for t in terms)
    loss = sum(t[0] for t in terms) / max(rows, 1)
    count = sum(t[3] for t in terms)
    return loss + sum(t[2] for t in terms) / count if count else loss


# -- logs -----------------------------------------------------------------------------------------

def step_scalars(total: torch.Tensor, losses: dict[str, torch.Tensor], queries: torch.Tensor, positives: torch.Tensor,
                 negatives: torch.Tensor, found: Any, picked: Picked, config: SFTConfig, *, lr: float,
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
    if config.reasoning_fraction > 0:  # this step's sampled reasonings (the same keys on every process)
        cut = picked.lengths[picked.lengths > 0]
        scalars.update({"charts/reasoning_kept": picked.kept_fraction if picked.reasonings else float("nan"),
                        "charts/reasoning_length": float(cut.mean()) if cut.size else float("nan"),
                        "charts/embed_token_rate": float(picked.emitted.mean()) if picked.emitted.size else float("nan")})
    return scalars


# -- the loop -------------------------------------------------------------------------------------

@torch.no_grad()
def reference_logits(embedder: ReasoningEmbedder, reference: ReasoningEmbedder | None, input_ids: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """The starting model's logits on a left-padded batch: the frozen copy ``reference``, or, when it is
    None (LoRA), the policy with its adapters disabled, which is the starting model without a copy."""
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    if reference is not None:
        return reference.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).logits
    with embedder.model.disable_adapter():
        return embedder.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).logits


@torch.no_grad()
def reference_embeddings(embedder: ReasoningEmbedder, reference: ReasoningEmbedder | None,
                         sequences: list[list[int]], instructions: list[str]) -> torch.Tensor:
    """(N, D) the starting model's embeddings of token sequences that end with the token: the frozen copy
    ``reference``, or the policy with its LoRA adapters disabled. Computed whole (no shared-prefix cache, which
    holds the policy's own keys and values)."""
    if reference is not None:
        return training_embeddings(reference, sequences, instructions, whole=True)[0]
    with embedder.model.disable_adapter():
        return training_embeddings(embedder, sequences, instructions, whole=True)[0]


@holds_run_lock  # one run per output folder (sr3_agent.training.runlock)
def train_sft(config: SFTConfig, *, embedder: ReasoningEmbedder | None = None,
              dataset: RetrievalDataset | None = None, dev: RetrievalDataset | None = None,
              progress: bool = True) -> ReasoningEmbedder:
    """Run SFT as configured; returns the trained embedder (also saved to ``output_dir/final``: the best step on
    the dev split with ``eval_every``, else the last).

    ``embedder``, ``dataset`` and ``dev`` override ``config.model``, the configured data and its dev split (tests
    pass a tiny model).
    """
    run = start_run(config, embedder=embedder, dataset=dataset, dev=dev,
                    ways=stage_ways(reasoning=config.reasoning_fraction > 0),
                    head_in_loss=config.lm_weight > 0 or config.kl_weight > 0)
    embedder, data, index, processes = run.embedder, run.data, run.index, run.processes
    gold = [data.relevant_rows(q)[0] for q in data.query_ids]
    embedder.model.train()
    warn_if_uneven(min(config.batch_size, len(data.query_ids)), processes)

    with graceful_interrupt() as stop:
        for step in run.steps("sft", progress):
            timer = time.perf_counter()
            rng = np.random.default_rng(process_entropy([config.seed, step, 1], processes))
            # the step's batch, the same on every process; each takes its block of it
            rows = shard_rows(batch_query_rows(len(data.query_ids), config.batch_size, step, config.seed), processes)
            batch_gold = [gold[r] for r in rows]

            # 1. queries, embedded directly or after a reasoning the model wrote: with more than one
            #    sample, the best by the rank it gives the relevant document (rejection sampling)
            texts = [data.query_texts[r] for r in rows]
            reason = np.flatnonzero(rng.random(len(rows)) < config.reasoning_fraction)
            if config.feedback_fraction > 0:  # some read what their direct embedding retrieves first (a second turn)
                reads = set(reason[rng.random(len(reason)) < config.feedback_fraction].tolist())
                shown = feedback_query_texts(embedder, index, data, texts, batch_gold, config.feedback_k)
                texts = [shown[i] if i in reads else text for i, text in enumerate(texts)]
            picked = pick_reasonings(embedder, [texts[i] for i in reason], [batch_gold[i] for i in reason],
                                     functools.partial(best_ranks, index, k=config.mine_top_k),
                                     samples=config.reasoning_samples,
                                     max_new_tokens=min(config.reasoning_tokens, config.kept_reasoning_tokens + 1),
                                     temperature=config.reasoning_temperature, min_tokens=config.min_reasoning_tokens,
                                     max_tokens=config.kept_reasoning_tokens, rule=config.keep,
                                     collective=processes.distributed)
            reasonings: list[list[int] | None] = [None] * len(rows)
            for i, reasoning in zip(reason, picked.reasonings):
                reasonings[i] = reasoning
            q_sequences, q_instructions = query_sequences(  # the direct rows in the latent layout with --latent-tokens
                embedder, texts, reasonings, embedder.latent_suffix() if config.latent_tokens else None,
                latent_rows(len(rows), config.latent_fraction, [config.seed, step, 2], processes))
            queries, q_lm, q_whole = training_embeddings(
                embedder, q_sequences, q_instructions, whole=config.kl_weight > 0,
                labelled=answer_lengths(reasonings, learn_reasoning=config.keep != "all" and config.lm_reasoning,
                                        direct=config.lm_direct), train_head=config.lm_head)  # (B, D)

            # 2. hard negatives under the current model (the index re-encodes the stale rows it touches)
            found = index.search(queries.detach(), batch_gold, k=config.mine_top_k)
            positives_rows = pick_positives(batch_gold, rng)
            negative_rows = pick_hard_negatives(found.top_rows, batch_gold, config.hard_negatives, len(index), rng)
            mined = time.perf_counter()

            # 3. positives then negatives, embedded as documents (with gradients)
            column_rows = np.concatenate([positives_rows, negative_rows.reshape(-1)])
            d_sequences = [ids + [embedder.embed_token_id] for ids in
                           embedder.prompt_ids([data.documents[r] for r in column_rows], embedder.prompts.document)]
            documents, d_lm, _ = training_embeddings(embedder, d_sequences, [embedder.prompts.document] * len(d_sequences),
                                                     train_head=config.lm_head)
            positives, negatives = documents[:len(rows)], documents[len(rows):]  # (B, D), (B*H, D)

            # 4. losses, one optimiser step (the model's version goes up; DDP averages the gradients)
            losses = {"info_nce": info_nce(queries, positives, negatives, temperature=config.infonce_temperature,
                                           false_negative_mask=false_negative_mask(batch_gold, column_rows).to(queries.device))}
            if config.triplet_weight > 0:
                losses["triplet"] = triplet_margin(queries, positives, negatives.view(len(rows), config.hard_negatives, -1),
                                                   margin=config.margin)
            if config.lm_weight > 0:  # documents are embedded directly: labelled with lm_direct only
                losses["lm"] = 0.5 * (q_lm + d_lm) if config.lm_direct else q_lm
            if config.anchor_weight > 0:  # the direct embeddings held where the stage started
                direct = [i for i, r in enumerate(reasonings) if r is None]
                losses["anchor"] = anchor_loss(torch.cat([queries[direct], documents]), reference_embeddings(
                    embedder, run.reference, [q_sequences[i] for i in direct] + d_sequences,
                    [q_instructions[i] for i in direct] + [embedder.prompts.document] * len(d_sequences)))
            if config.kl_weight > 0:  # every query position: computed whole
                q_hidden, q_ids, q_mask = q_whole
                head = embedder.model.get_output_embeddings()
                losses["kl"] = kl_to_reference(head(q_hidden), reference_logits(embedder, run.reference, q_ids, q_mask),
                                               q_mask.bool())
            weights = {"info_nce": config.infonce_weight, "triplet": config.triplet_weight, "lm": config.lm_weight,
                       "kl": config.kl_weight, "anchor": config.anchor_weight}
            total = sum(weights[name] * value for name, value in losses.items())
            run.update(total, losses, step + 1)

            # 5. logs and checkpoints, written by the main process (a first Ctrl-C stops here, after a checkpoint)
            run.bar.set_postfix(loss=f"{total.item():.3f}", rank=f"{np.mean([r.mean() for r in found.gold_ranks]):.1f}")
            scalars = lambda: step_scalars(total, losses, queries, positives, negatives, found, picked, config,  # noqa: E731
                                           lr=run.schedule.get_last_lr()[0],
                                           seconds=(mined - timer, time.perf_counter() - timer))
            if run.end_step(step + 1, scalars, stop):
                return embedder
    return run.finish()
