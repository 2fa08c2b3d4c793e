"""GRPO from scratch against RetrievalEmbed-v0, in one file: a Hugging Face model is the policy (it writes
reasonings, then embeds) and the environment's document encoder at once.

Every optimiser step changes the weights, so every corpus row the environment encoded before is stale. The
environment does not re-encode the corpus: each step it re-encodes only the stale rows that decide the
ranks (the top-K candidates and the gold documents) with the current model. The loop prints, per update,
how many rows that was and how many stay stale. Read it top to bottom, then change it.

Run as is to train the bundled SmolLM2-135M-Instruct on a GPU when there is one (``--model`` takes an
``sr3 sft`` output folder or any causal LM); the tests run it with a tiny random-weight model.
"""

import argparse
import ast
import copy
import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from sr3_agent import (ReasoningEmbedder, Rollout, clipped_policy_loss, group_advantages, kl_penalty_k3,
                       token_logprobs)
from sr3_env import load_dataset


@dataclass
class Args:
    model: str = "SmolLM2-135M-Instruct"
    """the policy: the bundled SmolLM2-135M-Instruct, an `sr3 sft` output folder or a causal LM"""
    dataset: str = "wordnet-revdict"
    """a bundled dataset or a BEIR folder; only its train split is used"""
    num_queries: int = 200
    """training queries drawn from the train split"""
    num_docs: int = 500
    """documents in the environment's corpus (the relevant ones of every query, then random others)"""
    num_updates: int = 20
    """optimiser steps; each one bumps the policy's version"""
    queries_per_update: int = 4
    """B: queries per update"""
    group_size: int = 4
    """G: reasonings sampled per query; the environment runs B*G sub-environments"""
    max_new_tokens: int = 32
    """longest reasoning, in tokens"""
    temperature: float = 1.0
    """sampling temperature of the reasonings"""
    learning_rate: float = 1e-5
    """AdamW learning rate"""
    update_epochs: int = 1
    """optimiser steps on each batch of rollouts (above 1, the ratio moves away from 1 and clipping acts)"""
    clip: float = 0.2
    """clipping range of the policy ratio"""
    kl_coef: float = 0.0
    """weight of the KL penalty to the starting model (0: no reference model is kept)"""
    max_grad_norm: float = 1.0
    """gradient norm clip"""
    reward: str = "log_rank"
    """the environment's reward (log_rank still separates samples that rank the gold far down)"""
    top_k: int = 20
    """candidates per query that the environment re-encodes when stale"""
    seed: int = 0
    """seed of the data subset, the queries drawn, the sampling and the environment"""
    output_dir: str = "runs/grpo-from-scratch"
    """the trained model is saved to OUTPUT_DIR/final (score it with sr3 eval --models OUTPUT_DIR/final)"""


def parse_args(argv: list[str] | None = None) -> Args:
    """One ``--option`` per field of `Args`, whose docstring is its help (as tyro does for cleanrl)."""
    body = next(node for node in ast.parse(Path(__file__).read_text(encoding="utf-8")).body
                if isinstance(node, ast.ClassDef) and node.name == "Args").body
    docs = {field.target.id: doc.value.value for field, doc in zip(body, body[1:])
            if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr)}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Args):
        parser.add_argument("--" + field.name.replace("_", "-"), type=field.type, default=field.default,
                            help=f"{docs[field.name]} (default: {field.default})")
    return Args(**vars(parser.parse_args(argv)))


def reasoning_logprobs(policy: ReasoningEmbedder, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass over the sampled sequences (left-padded, each ending with the embed token).

    Returns (N, L) log-probs of the last L tokens (the longest reasoning and the token), (N, L) the mask of the
    tokens the model wrote (those the loss trains), and (N, D) the embeddings at the token (the actions)."""
    ids, attention = rollout.input_ids, rollout.attention_mask                  # (N, T), (N, T)
    hidden = policy.hidden_states(ids, attention)                               # (N, T, H)
    # the LM head on the last L positions only: the prompt is never scored, and (N, T, V) logits are large
    L = min(int(rollout.reasoning_lengths.max()) + 1, ids.shape[1] - 1)
    logits = policy.model.get_output_embeddings()(hidden[:, -L - 1:-1]).float()  # (N, L, V): column t predicts t + 1
    logprobs = token_logprobs(logits, ids[:, -L:])                              # (N, L)
    return logprobs, rollout.reasoning_mask[:, -L:], policy.pool(hidden, ids, attention)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    B, G = args.queries_per_update, args.group_size
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    # the policy, and a frozen copy of it for the KL penalty
    policy = ReasoningEmbedder.from_pretrained(args.model)
    reference = copy.deepcopy(policy) if args.kl_coef > 0 else None
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=args.learning_rate)
    policy.attach_optimizer(optimizer)  # every optimizer.step() bumps policy.version: the index's rows go stale

    # the environment: B*G sub-environments (G per query), one corpus index encoded by the policy itself
    train = load_dataset(args.dataset, split="train").subset(num_queries=args.num_queries, num_docs=args.num_docs,
                                                             seed=args.seed)
    if B > len(train.query_ids):
        raise SystemExit(f"--queries-per-update {B} is more than the {len(train.query_ids)} training queries: lower it "
                         "or raise --num-queries")
    envs = gym.make_vec("RetrievalEmbed-v0", num_envs=B * G, vectorization_mode="vector_entry_point",
                        dataset=train, encoder=policy, reward=args.reward, top_k=args.top_k)
    envs.reset(seed=args.seed)
    n_docs = len(train.doc_ids)
    print(f"{train}; policy {policy.name}, version {policy.version}; {B} queries x {G} samples per update")
    print("update | reward | gold rank | rows re-encoded this step | rows stale after it | version")

    history = []
    for update in range(1, args.num_updates + 1):
        # 1. B training queries, each given to G sub-environments: one group per query
        query_ids = [train.query_ids[i] for i in rng.choice(len(train.query_ids), size=B, replace=False)]
        queries, _ = envs.reset(options={"query_ids": [q for q in query_ids for _ in range(G)]})

        # 2. G sampled reasonings per query, each ending with the embed token
        rollout = policy.generate_reasoning(list(queries[::G]), num_samples=G, max_new_tokens=args.max_new_tokens,
                                            temperature=args.temperature)

        # 3. the reasoning tokens' log-probs and the embeddings in one forward pass (in eval mode: no dropout, so
        #    these are the log-probs the samples were drawn with)
        logprobs, mask, embeddings = reasoning_logprobs(policy, rollout)              # (N, L), (N, L), (N, D)
        old_logprobs = logprobs.detach()                                              # the sampling policy's
        if reference is not None:
            with torch.no_grad():
                ref_logprobs = reasoning_logprobs(reference, rollout)[0]

        # 4. the environment ranks the corpus for all B*G embeddings in one search; the stale rows among the
        #    candidates and the gold are re-encoded by the policy first
        _, rewards, _, _, infos = envs.step(embeddings.detach().cpu().numpy())
        index = infos["final_info"]["index"]  # one search for the whole batch: the same figures in every row

        # 5. group-relative advantages and the clipped policy-gradient loss on the reasoning tokens
        advantages = group_advantages(torch.as_tensor(rewards), G).to(logprobs.device)  # (N,)
        for epoch in range(args.update_epochs):
            if epoch > 0:
                logprobs = reasoning_logprobs(policy, rollout)[0]
            loss = clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip=args.clip)
            if reference is not None:
                loss = loss + args.kl_coef * kl_penalty_k3(logprobs, ref_logprobs, mask)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.model.parameters(), args.max_grad_norm)
            optimizer.step()  # policy.version += 1

        row = {"update": update, "reward": float(np.mean(rewards)),
               "rank": float(np.mean(infos["final_info"]["rank"])),
               "rows_reencoded": int(index["rows_reencoded"][0]), "stale_rows": int(index["stale_rows"][0]),
               "rows_reencoded_total": int(index["rows_reencoded_total"][0]),
               "scored_by_version": int(index["encoder_version"][0]), "version": policy.version}
        history.append(row)
        stale = f"{row['stale_rows']} of {n_docs}"
        print(f"{update:6d} | {row['reward']:6.3f} | {row['rank']:9.1f} | {row['rows_reencoded']:25d} | {stale:>19} | "
              f"{row['scored_by_version']} -> {row['version']}")

    print(f"re-encoded {history[-1]['rows_reencoded_total']} document rows in {args.num_updates} updates; "
          f"re-encoding the whole corpus after every update would have taken {n_docs * (args.num_updates - 1)}")
    envs.close()
    print(f"saved to {policy.save_pretrained(Path(args.output_dir) / 'final')}")
    return history


if __name__ == "__main__":
    main()
