"""Train a stable-baselines3 PPO agent on RetrievalEmbed-v0 and compare it with simple policies.

The agent sees each query as its frozen all-MiniLM-L6-v2 embedding (`QueryEmbeddingObservation`)
and acts with a query embedding; the reward is the log-rank of the relevant papers. The table
compares, on every query of the dataset: a random policy, the frozen encoder itself (act with the
observation), and PPO before and after training.

    python examples/sb3_demo.py                       # bundled semanlink, MiniLM, 100k steps (about 2 minutes)
    python examples/sb3_demo.py --encoder hashing --timesteps 2000 --queries 20   # seconds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import sr3_env
from sr3_env import QueryEmbeddingObservation


def evaluate(env: gym.Env, policy: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """Mean reward and IR metrics of a policy over every query of the environment's dataset."""
    rows = []
    for query_id in env.unwrapped.dataset.query_ids:
        observation, _ = env.reset(options={"query_id": query_id})
        _, reward, _, _, info = env.step(policy(observation))
        rows.append([reward, info["metrics"]["reciprocal_rank"], info["metrics"]["ndcg@10"], info["metrics"]["recall@100"]])
    return dict(zip(["reward", "MRR", "nDCG@10", "Recall@100"], np.mean(rows, axis=0)))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="semanlink", help="bundled name or BEIR folder")
    parser.add_argument("--encoder", default="minilm", choices=["minilm", "hashing"])
    parser.add_argument("--queries", type=int, default=None, help="train and evaluate on this many queries (default: all)")
    parser.add_argument("--timesteps", type=int, default=100_000, help="PPO training steps (one query each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from stable_baselines3 import PPO

    dataset = sr3_env.load_dataset(args.dataset)
    if args.queries:
        dataset = dataset.subset(num_queries=args.queries, seed=args.seed)
    env = QueryEmbeddingObservation(gym.make("RetrievalEmbed-v0", dataset=dataset, encoder=args.encoder, reward="log_rank"))
    env.action_space.seed(args.seed)
    print(f"{dataset}: {env.unwrapped.encoder.dim}-dimensional actions, reward = log-rank")

    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, policy_kwargs={"log_std_init": -1.0}, seed=args.seed, device="cpu")
    results = {
        "random": evaluate(env, lambda observation: env.action_space.sample()),
        "frozen encoder (act = observation)": evaluate(env, lambda observation: observation),
        "PPO before training": evaluate(env, lambda observation: model.predict(observation, deterministic=True)[0]),
    }
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=True)
    seconds = time.perf_counter() - start
    results[f"PPO after {args.timesteps} steps"] = evaluate(env, lambda observation: model.predict(observation, deterministic=True)[0])

    print(f"\nPPO trained for {args.timesteps} steps in {seconds:.0f} s; evaluated on all {len(dataset.query_ids)} queries\n")
    print("| policy | reward (log-rank) | MRR | nDCG@10 | Recall@100 |")
    print("|---|---|---|---|---|")
    for name, metrics in results.items():
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in metrics.values()) + " |")
    return results


if __name__ == "__main__":
    main()
