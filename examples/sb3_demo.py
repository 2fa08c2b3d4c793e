"""Train a stable-baselines3 PPO agent on RetrievalEmbed-v0's train queries, then score it on the test queries.

The agent sees each query as its frozen all-MiniLM-L6-v2 embedding (`QueryEmbeddingObservation`) and acts
with a query embedding; the reward is the log rank of the relevant document (docs/environment.md, Rewards).
PPO trains on the train split only; then every policy plays each query of the test split once, against the
same corpus: a random policy, the do-nothing policy (act = observation: the frozen encoder's own query
embedding, the baseline to beat), and PPO before and after training.

What it shows: the environment plugs into an off-the-shelf RL library unchanged. It does not show PPO
beating the frozen encoder, and at this budget expect it to end below: PPO starts from a random policy over
384-dimensional actions and must rediscover, from one scalar reward per query, the near-identity map that
the do-nothing policy starts with. The script prints how PPO compares with it. To improve on an encoder,
start from it (act = observation + a learned correction) or train the encoder itself (``sr3 rl``).

Needs ``pip install "sr3[sb3]"``.

    python examples/sb3_demo.py                       # python-docstrings, MiniLM, 100k steps (a few minutes)
    python examples/sb3_demo.py --encoder hashing --timesteps 2000 --train-queries 50   # seconds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import sr3_env
from sr3_env import QueryEmbeddingObservation

try:
    from stable_baselines3 import PPO
except ImportError as error:
    raise SystemExit(f'This example needs stable-baselines3: pip install "sr3[sb3]" ({error})') from error

DO_NOTHING = "do nothing (act = observation)"


def evaluate(env: gym.Env, policy: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """Mean reward and IR metrics of a policy over every query of the environment's dataset."""
    rows = []
    for query_id in env.unwrapped.dataset.query_ids:
        observation, _ = env.reset(options={"query_id": query_id})
        _, reward, _, _, info = env.step(policy(observation))
        rows.append([reward, info["metrics"]["reciprocal_rank"], info["metrics"]["ndcg@10"], info["metrics"]["recall@100"]])
    return dict(zip(["reward", "MRR", "nDCG@10", "Recall@100"], np.mean(rows, axis=0)))


def make_env(dataset: sr3_env.RetrievalDataset, encoder: str) -> gym.Env:
    return QueryEmbeddingObservation(gym.make("RetrievalEmbed-v0", dataset=dataset, encoder=encoder, reward="log_rank"))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="python-docstrings", help="bundled name or BEIR folder with a train split")
    parser.add_argument("--eval-split", default="test", choices=["dev", "test"], help="the split every policy is scored on")
    parser.add_argument("--encoder", default="minilm", choices=["minilm", "hashing"])
    parser.add_argument("--train-queries", type=int, default=None, help="train on this many train queries (default: all)")
    parser.add_argument("--eval-queries", type=int, default=None, help="score on this many queries (default: all)")
    parser.add_argument("--timesteps", type=int, default=100_000, help="PPO training steps (one query each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train_data = sr3_env.load_dataset(args.dataset, split="train")
    eval_data = sr3_env.load_dataset(args.dataset, split=args.eval_split)
    if args.train_queries:
        train_data = train_data.subset(num_queries=args.train_queries, seed=args.seed)  # the whole corpus is kept
    if args.eval_queries:
        eval_data = eval_data.subset(num_queries=args.eval_queries, seed=args.seed)
    train_env, eval_env = make_env(train_data, args.encoder), make_env(eval_data, args.encoder)
    eval_env.action_space.seed(args.seed)
    print(f"train: {train_data}\n{args.eval_split}: {eval_data}\n"
          f"{eval_env.unwrapped.encoder.dim}-dimensional actions, reward = log rank")

    model = PPO("MlpPolicy", train_env, n_steps=256, batch_size=64, policy_kwargs={"log_std_init": -1.0},
                seed=args.seed, device="cpu")
    results = {
        "random": evaluate(eval_env, lambda observation: eval_env.action_space.sample()),
        DO_NOTHING: evaluate(eval_env, lambda observation: observation),
        "PPO before training": evaluate(eval_env, lambda observation: model.predict(observation, deterministic=True)[0]),
    }
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=True)
    seconds = time.perf_counter() - start
    trained = f"PPO after {args.timesteps} steps"
    results[trained] = evaluate(eval_env, lambda observation: model.predict(observation, deterministic=True)[0])

    print(f"\nPPO trained for {args.timesteps} steps in {seconds:.0f} s on {len(train_data.query_ids)} train queries; "
          f"every policy scored on {len(eval_data.query_ids)} {args.eval_split} queries\n")
    print("| policy | reward (log rank) | MRR | nDCG@10 | Recall@100 |")
    print("|---|---|---|---|---|")
    for name, metrics in results.items():
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in metrics.values()) + " |")
    gap = results[trained]["reward"] - results[DO_NOTHING]["reward"]
    print(f"\nPPO ends {'above' if gap > 0 else 'below'} the do-nothing policy by {abs(gap):.3f} reward: "
          + ("it improved on the frozen encoder's own query embedding." if gap > 0 else
             "it has not yet relearned the map from observation to action that the do-nothing policy starts with."))
    return results


if __name__ == "__main__":
    main()
