"""Reinforcement learning of reasoning and embedding against `RetrievalEmbed-v0`: ``sr3 rl``.

Per iteration (`train_rl`, which reads top to bottom like cleanrl's ``ppo.py``):

1. a batch of training queries, each repeated G times across the vectorised environment;
2. G sampled reasonings per query, each ending with ``<|embed_token|>``;
3. one forward pass gives the per-token log-probabilities of the reasonings and the embeddings;
4. the environment scores all B·G embeddings in one call; its index's document encoder is the
   policy itself, so rows made before the last update are stale and only those the search touches
   are re-encoded (lazy refresh);
5. group-relative advantages; a clipped policy-gradient loss on the reasoning tokens, a KL
   penalty to the frozen starting model, an auxiliary InfoNCE of the embeddings against the
   document rows the index just re-encoded, and (``anchor_weight``) the anchor that holds the direct
   embeddings of the step's queries and documents where the stage started;
6. one optimiser step, after which the policy's ``version`` goes up.

With ``auto``, not reasoning is one of each query's options: the policy may write the token at once,
the last of each group does (`with_direct_option`), and such a sample is scored with its query's
direct embedding (`direct_where_chosen`), so a reasoning earns an advantage only where it beats it.

With ``turns=2`` the environment is `RetrievalRefine-v0`: turn 1 is each query's direct embedding
(`first_turn`), and the G reasonings of step 2 read the documents it retrieved (`sr3_agent.evaluation.feedback`);
the advantages compare the episodes' returns, which are the last turn's rewards.

The pieces are pure functions tested on their own: `sr3_agent.training.losses`, `policy_forward`,
`auxiliary_batch`. Under ``accelerate launch`` every process takes its block of each step's queries
(all G samples of a query stay on one process) and DDP averages the gradients (`sr3_agent.training.distributed`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from sr3_agent.training.checkpoint import graceful_interrupt
from sr3_agent.config import RLConfig
from sr3_agent.training.distributed import shard_rows, warn_if_uneven
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.model.generation import Rollout, direct_choices, with_direct_option
from sr3_agent.evaluation.feedback import feedback_texts
from sr3_agent.training.harness import start_run
from sr3_agent.training.losses import (anchor_loss, clipped_policy_loss, group_advantages, info_nce, kl_penalty_k3,
                                      token_logprobs)
from sr3_agent.training.runlock import holds_run_lock
from sr3_agent.training.parts import batch_query_rows, false_negative_mask
from sr3_agent.training.selection import stage_ways
from sr3_env import RetrievalDataset
from sr3_env.refine_vector import RetrievalRefineVectorEnv
from sr3_env.vector import RetrievalEmbedVectorEnv


# -- pure pieces ----------------------------------------------------------------------------------

def policy_forward(policy: ReasoningEmbedder, rollout: Rollout, *, grouped: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: (N, T-1) log-probability of each token given the ones before it, and
    (N, D) embeddings at the embed token. Column t of the log-probs scores token t+1; the columns
    before the batch's earliest reasoning token are 0 (prompts are never scored).

    With ``grouped`` (and where `ReasoningEmbedder.grouped_hidden_states` applies), each prompt is
    computed once for its G samples and the LM head runs only on the reasoning; the log-probs are
    then filled in for the reasoning and embed-token columns only (the ones `rollout.reasoning_mask`
    can mark) and are 0 elsewhere. Losses and gradients equal the plain pass's (a test checks it)."""
    parts = policy.grouped_hidden_states(rollout) if grouped else None
    if parts is None:
        hidden = policy.hidden_states(rollout.input_ids, rollout.attention_mask)  # (N, T, H)
        # the LM head only where a reasoning can be: from the earliest reasoning column to the end (the
        # prompt's columns are never scored, and (N, T, V) logits of a 150k vocabulary would not fit)
        N, T = rollout.input_ids.shape
        marked = rollout.reasoning_mask.any(dim=0).nonzero()
        start = max(int(marked.min()) - 1, 0) if len(marked) else T - 2
        logits = policy.model.get_output_embeddings()(hidden[:, start:-1]).float()  # (N, T-1-start, V)
        logprobs = torch.zeros(N, T - 1, device=hidden.device)
        logprobs = torch.cat([logprobs[:, :start], token_logprobs(logits, rollout.input_ids[:, start + 1:])], dim=1)
        return logprobs, policy.pool(hidden, rollout.input_ids, rollout.attention_mask)
    last, states, tokens, mask = parts  # (N, H), (N, L, H), (N, L), (N, L): the continuation, right-padded
    N, L = mask.shape
    predictors = torch.cat([last[:, None], states[:, :-1]], dim=1)  # (N, L, H): position k predicts token k
    continuation_logprobs = token_logprobs(policy.model.get_output_embeddings()(predictors).float(), tokens)
    lengths = mask.sum(dim=1)  # (N,) reasoning + embed token
    embeddings = torch.nn.functional.normalize(states[torch.arange(N, device=states.device), lengths - 1].float(), dim=-1)
    # into the plain layout: sequences are left-padded to T and end with the token, so continuation
    # token k of row n is column T - len_n + k, scored in log-prob column T - len_n + k - 1
    T = rollout.input_ids.shape[1]
    steps = torch.arange(L, device=mask.device)
    columns = torch.where(steps < lengths[:, None], T - lengths[:, None] - 1 + steps, T - 1 + steps)  # spare columns
    logprobs = torch.zeros(N, T - 1 + L, device=states.device).scatter(1, columns, continuation_logprobs)[:, :T - 1]
    return logprobs, embeddings


def direct_where_chosen(policy: ReasoningEmbedder, texts: list[str], rollout: Rollout, embeddings: torch.Tensor
                        ) -> torch.Tensor:
    """(N, D) ``embeddings`` with each row in which the policy chose not to reason (`direct_choices`)
    replaced by its query's direct embedding, computed now with gradients: what the ``auto`` way
    embeds there. ``texts`` (N / G,) are the queries, each behind G consecutive rows."""
    chosen = direct_choices(rollout).nonzero().flatten()
    if not len(chosen):
        return embeddings
    direct = policy.embed(*policy.direct_batch([texts[int(r) // rollout.num_samples] for r in chosen], policy.prompts.query))
    return embeddings.index_put((chosen.to(embeddings.device),), direct.to(embeddings.dtype))


@torch.no_grad()
def reference_logprobs(policy: ReasoningEmbedder, reference: ReasoningEmbedder | None, rollout: Rollout) -> torch.Tensor:
    """(N, T-1) log-probs of the starting model: the frozen copy ``reference``, or, when it is None (LoRA),
    the policy with its adapters disabled, which is the starting model without a second copy."""
    if reference is not None:
        return policy_forward(reference, rollout)[0]
    with policy.model.disable_adapter():
        return policy_forward(policy, rollout)[0]


def auxiliary_batch(gold_rows: list[np.ndarray], top_rows: list[np.ndarray], negatives_per_query: int
                    ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Rows for the auxiliary InfoNCE of N embeddings: each one's positive (its first relevant row),
    the shared negatives (the top-ranked non-relevant rows of each, deduplicated), and the
    (N, N + M) false-negative mask (columns relevant to a row's query but not its label)."""
    positives = np.array([rows[0] for rows in gold_rows], dtype=np.int64)
    picked = [top[~np.isin(top, gold)][:negatives_per_query] for top, gold in zip(top_rows, gold_rows)]
    negatives = np.unique(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)
    negatives = negatives[~np.isin(negatives, positives)]  # a positive of one query is an in-batch column already
    columns = np.concatenate([positives, negatives])
    return positives, negatives, false_negative_mask(gold_rows, columns)


def score_margins(embeddings: torch.Tensor, gold_vectors: list[torch.Tensor], top_scores: np.ndarray,
                  top_is_gold: np.ndarray) -> torch.Tensor:
    """(N,) how far each embedding puts its query's best relevant document above the best other one:
    max over the relevant rows of ``q · d`` minus the best non-relevant score among the top-k (the
    k-th score when the top-k are all relevant). Unlike a rank it keeps separating samples that all
    rank the relevant document first.

    ``embeddings`` (N, D); ``gold_vectors[n]`` (g_n, D) the current index rows of query n's relevant
    documents; ``top_scores`` (N, k) and ``top_is_gold`` (N, k) from the search."""
    scores = np.asarray(top_scores, dtype=np.float32)
    others = np.where(np.asarray(top_is_gold, dtype=bool), -np.inf, scores).max(axis=1)
    others = np.where(np.isfinite(others), others, scores.min(axis=1))
    gold = torch.stack([(rows.to(embeddings) @ q).max() for q, rows in zip(embeddings, gold_vectors)])
    return gold.float() - torch.as_tensor(others, device=gold.device)


def shaped_rewards(env_rewards: np.ndarray, margins: torch.Tensor, emitted: torch.Tensor, config: RLConfig) -> torch.Tensor:
    """(N,) the rewards the advantages use: the environment's, plus ``margin_weight`` × the score
    margin (which does not saturate at rank 1), plus ``token_bonus`` where the model wrote the token
    itself; where it did not, ``missing_token_reward`` instead of all of it (unless that is None)."""
    emitted = emitted.bool().cpu()
    rewards = (torch.as_tensor(env_rewards, dtype=torch.float32) + config.margin_weight * margins.detach().float().cpu()
               + config.token_bonus * emitted.float())
    if config.missing_token_reward is None:
        return rewards
    return torch.where(emitted, rewards, torch.full_like(rewards, config.missing_token_reward))


def chose_direct_rate(rollout: Rollout) -> float:
    """Share of the sampled rows (not the last of each group, which `with_direct_option` set) in which
    the policy chose not to reason."""
    return float(direct_choices(rollout).view(-1, rollout.num_samples)[:, :-1].float().mean())


def zero_variance_share(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose samples all got the same reward (they carry no policy gradient)."""
    grouped = rewards.view(-1, group_size)
    return float((grouped.max(dim=1).values - grouped.min(dim=1).values <= 1e-6).float().mean())


def rl_losses(logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None, advantages: torch.Tensor, mask: torch.Tensor,
              emitted: torch.Tensor, embeddings: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
              fn_mask: torch.Tensor, config: RLConfig) -> dict[str, torch.Tensor]:
    """The losses of one update (one optimiser step per batch: the sampling policy is the current
    one, so the old log-probs are the current ones, detached). Every sequence ends with the token, so
    the last log-prob column scores it; ``emitted`` (N,) marks the rows where the policy wrote it.
    The token's LM loss imitates where the better half of each group stopped (positive advantage): on
    every row that wrote it, it would teach the policy to stop as early as it may."""
    losses = {"policy": clipped_policy_loss(logprobs, logprobs.detach(), advantages, mask, clip=config.clip)}
    if ref_logprobs is not None:
        losses["kl"] = kl_penalty_k3(logprobs, ref_logprobs, mask)
    if config.token_lm_weight > 0:  # where the policy wrote the token after a reasoning better than its group's mean
        written = emitted.to(logprobs.device).bool() & (advantages > 0)
        losses["token"] = -logprobs[written, -1].mean() if written.any() else logprobs[written, -1].sum()  # empty: 0
    if config.aux_weight > 0:
        losses["aux"] = info_nce(embeddings, positives, negatives if len(negatives) else None,
                                 temperature=config.aux_temperature, false_negative_mask=fn_mask)
    return losses


def first_turn(policy: ReasoningEmbedder, env: RetrievalRefineVectorEnv, texts: list[str], group_size: int
               ) -> tuple[np.ndarray, list[str]]:
    """Turn 1 of B two-turn episodes, each played by G environments: the direct embedding of each
    query (no gradient), stepped G times. Returns the turn's (B·G,) rewards and, per query, the text
    its turn-2 reasonings read: the query and the documents that embedding retrieved."""
    vectors = policy.encode_queries(texts, reasoning=False)  # (B, D)
    observations, rewards, *_ = env.step(np.repeat(vectors, group_size, axis=0))
    return np.asarray(rewards, dtype=np.float64), feedback_texts(policy, texts, observations["documents"][::group_size])


# -- the loop -------------------------------------------------------------------------------------

def step_scalars(shaped: torch.Tensor, rewards: np.ndarray, margins: torch.Tensor, first_rewards: Any,
                 ranks: np.ndarray, rollout: Rollout, total: torch.Tensor, losses: dict[str, torch.Tensor],
                 final: dict[str, Any], clock: list[float], config: RLConfig) -> dict[str, float]:
    """The step's TensorBoard scalars (the loop averages them over the processes)."""
    return {"charts/reward_mean": float(shaped.mean()), "charts/reward_std": float(shaped.std()),
            "charts/env_reward_mean": float(rewards.mean()), "charts/margin_mean": float(margins.mean()),
            **({"charts/turn1_env_reward_mean": float(np.mean(first_rewards))} if config.turns == 2 else {}),
            "charts/zero_variance_groups": zero_variance_share(shaped, config.group_size),
            "charts/rank_mean": float(ranks.mean()), "charts/rank_std": float(ranks.std()),
            "charts/reasoning_length": float(rollout.reasoning_lengths.float().mean()),
            "charts/embed_token_rate": float(rollout.emitted.float().mean()),
            **({"charts/chose_direct_rate": chose_direct_rate(rollout)} if config.auto else {}),
            "losses/total": total.item(), **{f"losses/{k}": v.item() for k, v in losses.items()},
            "index/rows_reencoded": float(np.asarray(final["index"]["rows_reencoded"])[0]),
            "index/stale_fraction": float(np.asarray(final["index"]["stale_fraction"])[0]),
            **{f"time/{name}_s": b - a for name, a, b in zip(("generation", "encoding", "scoring", "update"), clock, clock[1:])}}


def direct_anchor(policy: ReasoningEmbedder, reference: ReasoningEmbedder | None, texts: list[str],
                  documents: list[str]) -> torch.Tensor:
    """The anchor of the direct embedding (`anchor_loss`): this step's queries embedded directly and their positive
    documents, by the policy (with gradients) against the starting model (the frozen copy, or the policy with its
    LoRA adapters disabled)."""
    batches = [policy.direct_batch(texts, policy.prompts.query), policy.direct_batch(documents, policy.prompts.document)]
    current = torch.cat([policy.embed(*batch) for batch in batches])
    with torch.no_grad():
        if reference is not None:
            start = torch.cat([reference.embed(*batch) for batch in batches])
        else:
            with policy.model.disable_adapter():
                start = torch.cat([policy.embed(*batch) for batch in batches])
    return anchor_loss(current, start)


@holds_run_lock  # one run per output folder (sr3_agent.training.runlock)
def train_rl(config: RLConfig, *, policy: ReasoningEmbedder | None = None, dataset: RetrievalDataset | None = None,
             dev: RetrievalDataset | None = None, progress: bool = True) -> ReasoningEmbedder:
    """Run RL as configured; returns the trained policy (also saved to ``output_dir/final``: the best step on the
    dev split with ``eval_every``, else the last).

    ``policy``, ``dataset`` and ``dev`` override the configured model, data and dev split (tests use tiny ones).
    """
    run = start_run(config, embedder=policy, dataset=dataset, dev=dev,
                    ways=stage_ways(reasoning=True, auto=config.auto, turns=config.turns))
    policy, data, index, processes, reference = run.embedder, run.data, run.index, run.processes, run.reference
    B, G = min(config.queries_per_step, len(data.query_ids)), config.group_size
    warn_if_uneven(B, processes)
    block = len(shard_rows(np.arange(B), processes))  # this process's queries per step
    task = dict(num_envs=block * G, dataset=data, index=index, reward=config.reward, top_k=config.top_k)
    env = (RetrievalRefineVectorEnv(max_turns=2, feedback_k=config.feedback_k, **task) if config.turns == 2
           else RetrievalEmbedVectorEnv(**task))

    with graceful_interrupt() as stop:
        for step in run.steps("rl", progress):
            clock = [time.perf_counter()]
            # 1. B queries, each G times (the step's batch is the same on every process; each takes its block)
            rows = shard_rows(batch_query_rows(len(data.query_ids), B, step, config.seed), processes)
            env.reset(options={"query_ids": [data.query_ids[r] for r in rows for _ in range(G)]})

            # 2. G sampled reasonings per query (with two turns: after reading what its direct embedding retrieved)
            policy.model.eval()
            texts, first_rewards = [data.query_texts[r] for r in rows], 0.0
            if config.turns == 2:
                first_rewards, texts = first_turn(policy, env, texts, G)
            rollout = policy.generate_reasoning(texts, max_new_tokens=config.reasoning_tokens, num_samples=G,
                                                temperature=config.reasoning_temperature, top_p=config.top_p,
                                                min_new_tokens=0 if config.auto else None)
            rollout = with_direct_option(policy, rollout) if config.auto else rollout  # auto: not reasoning is an option
            clock.append(time.perf_counter())

            # 3. log-probs and embeddings in one pass (kept for the update); the reference's log-probs
            policy.model.train()
            logprobs, embeddings = policy_forward(policy, rollout)
            embeddings = direct_where_chosen(policy, texts, rollout, embeddings) if config.auto else embeddings
            ref_logprobs = reference_logprobs(policy, reference, rollout) if config.kl_weight > 0 else None
            clock.append(time.perf_counter())

            # 4. the environment scores all B*G embeddings in one call (re-encoding the stale rows it touches)
            _, rewards, _, _, infos = env.step(embeddings.detach().cpu().numpy())
            rewards = rewards + first_rewards  # the episode's return: r(rank) of its last turn
            final = infos["final_info"]
            clock.append(time.perf_counter())

            # 5. rewards (the environment's, shaped), advantages and losses
            gold_rows = [data.doc_rows(ids) for ids in final["gold_ids"]]
            top_rows = [data.doc_rows(ids) for ids in final["top_ids"]]
            positives, negatives, fn_mask = auxiliary_batch(gold_rows, top_rows, config.aux_negatives)
            with torch.no_grad():  # the rows the index just re-encoded with the current policy (collective)
                vectors = index.rows_embeddings(np.concatenate([positives, negatives, *gold_rows])).to(embeddings.device)
                positive_vectors, negative_vectors = vectors[:len(positives)], vectors[len(positives):len(positives) + len(negatives)]
                gold_vectors = torch.split(vectors[len(positives) + len(negatives):], [len(rows) for rows in gold_rows])
                margins = score_margins(embeddings.detach(), list(gold_vectors), np.stack(final["top_scores"]),
                                        np.stack([np.isin(top, gold) for top, gold in zip(top_rows, gold_rows)]))
            shaped = shaped_rewards(rewards, margins, rollout.emitted, config)
            advantages = group_advantages(shaped, G, normalise_std=config.normalise_std).to(embeddings.device)
            mask = rollout.reasoning_mask[:, 1:]
            losses = rl_losses(logprobs, ref_logprobs, advantages, mask, rollout.emitted, embeddings, positive_vectors,
                               negative_vectors, fn_mask.to(embeddings.device), config)
            if config.anchor_weight > 0:  # the direct embedding held where the stage started
                losses["anchor"] = direct_anchor(policy, reference, [data.query_texts[r] for r in rows],
                                                  [data.documents[r] for r in positives])
            total = (losses["policy"] + config.kl_weight * losses.get("kl", 0) + config.aux_weight * losses.get("aux", 0)
                     + config.token_lm_weight * losses.get("token", 0) + config.anchor_weight * losses.get("anchor", 0))

            # 6. one optimiser step (DDP averages the gradients): the policy's version goes up, the index's rows go stale
            run.update(total, losses, step + 1)
            clock.append(time.perf_counter())
            done = step + 1

            # 7. logs, the dev evaluation when due, checkpoints
            ranks = np.asarray(final["rank"], dtype=np.float64)
            run.bar.set_postfix(reward=f"{shaped.mean():.3f}", rank=f"{ranks.mean():.1f}")
            scalars = lambda: step_scalars(shaped, rewards, margins, first_rewards, ranks, rollout, total, losses,  # noqa: E731
                                           final, clock, config)
            if run.end_step(done, scalars, stop):
                return policy
    return run.finish()
