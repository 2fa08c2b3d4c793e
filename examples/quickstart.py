"""The environment in ten lines: make it, reset, act with an embedding, read the reward."""

import gymnasium as gym
import numpy as np

import sr3_env  # noqa: F401  (registers RetrievalEmbed-v0)


def main(encoder: str = "minilm") -> float:
    env = gym.make("RetrievalEmbed-v0", encoder=encoder, reward="ndcg@10", render_mode="ansi")
    query, info = env.reset(seed=0)
    embedding = env.unwrapped.encoder.encode_documents([query])[0]  # embed the query with the frozen encoder
    _, reward, terminated, _, info = env.step(np.asarray(embedding, dtype=np.float32))
    print(env.render())
    print(f"nDCG@10 = {reward:.3f}; best gold rank {info['rank']}; index: {info['index']}")
    return reward


if __name__ == "__main__":
    main()
