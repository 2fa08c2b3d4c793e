"""Wrappers for agents that cannot read text, such as stable-baselines3."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sr3_env.encoders import Encoder, encode_queries


class QueryEmbeddingObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace the query text by its embedding under a frozen encoder (a ``Box`` observation).

    Args:
        env: a `RetrievalEmbedEnv` (possibly wrapped).
        encoder: the frozen encoder that embeds queries (default: the environment's own encoder).
            With the default, acting with the observation itself is the frozen-retriever baseline,
            so a learning agent starts from a meaningful identity map.

    The embeddings of all of the dataset's queries are computed once, at construction.
    """

    def __init__(self, env: gym.Env, encoder: Encoder | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, encoder=encoder)  # lets env.spec recreate the wrapper
        gym.ObservationWrapper.__init__(self, env)
        base = env.unwrapped
        self.query_encoder = encoder if encoder is not None else base.encoder
        dataset = base.dataset
        vectors = encode_queries(self.query_encoder, dataset.query_texts)
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self._by_text = {text: row for row, text in zip(vectors / norms, dataset.query_texts)}
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self.query_encoder.dim,), dtype=np.float32)

    def observation(self, observation: str) -> np.ndarray:
        return self._by_text[observation].astype(np.float32)


def make_sb3_env(**kwargs: Any) -> gym.Env:
    """`RetrievalEmbed-v0` with the query-embedding observation, ready for stable-baselines3."""
    return QueryEmbeddingObservation(gym.make("RetrievalEmbed-v0", **kwargs))
