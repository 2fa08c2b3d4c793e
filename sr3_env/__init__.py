"""sr3_env: the `RetrievalEmbed-v0` and `RetrievalRefine-v0` Gymnasium environments and their lazily
refreshed corpus index.

``import sr3_env`` registers the environments; heavy dependencies (FAISS, sentence-transformers)
are imported only when they are used. Everything a user builds on is importable from here:

- environments: `RetrievalEmbedEnv`, `RetrievalRefineEnv`, their vectorised forms, and
  `RetrievalTask` (the dataset, encoder, index and reward they share);
- data: `load_dataset`, `RetrievalDataset`, mixtures and dev splits;
- encoders: the `Encoder` protocol and `MiniLMEncoder`, `HashingEncoder`, `SentenceTransformerEncoder`,
  `CallableEncoder`, `make_encoder`;
- the index: `LazyIndex`, `SearchResult`, `IndexStats`;
- rewards: `reciprocal_rank`, `ndcg_at_k`, `recall_at_k`, `log_rank`, `get_reward`;
- wrappers and baselines: `QueryEmbeddingObservation`, `make_sb3_env`, `RocchioPolicy`;
- errors: `Sr3Error` and its subclasses.
"""

from gymnasium.envs.registration import register

from sr3_env.baselines import RocchioPolicy
from sr3_env.data import BUNDLED_DATASETS, RetrievalDataset, available_splits, carve_dev, load_dataset
from sr3_env.encoders import (CallableEncoder, Encoder, HashingEncoder, MiniLMEncoder, SentenceTransformerEncoder,
                              encode_queries, make_encoder)
from sr3_env.env import RetrievalEmbedEnv
from sr3_env.errors import (DataError, DatasetNotFoundError, DependencyNotInstalled, EncoderError, InvalidActionError,
                            InvalidOptionError, ResetNeeded, SplitNotFoundError, Sr3Error, UnknownIdError)
from sr3_env.index import REFRESH_POLICIES, IndexStats, LazyIndex, SearchResult
from sr3_env.mixture import load_mixture, mix_datasets, mixture_source, parse_dataset_specs
from sr3_env.refine import RetrievalRefineEnv
from sr3_env.refine_vector import RetrievalRefineVectorEnv
from sr3_env.rewards import (STANDARD_METRICS, RewardFn, get_reward, log_rank, ndcg_at_k, recall_at_k, reciprocal_rank,
                             reward_names)
from sr3_env.task import RetrievalTask
from sr3_env.vector import RetrievalEmbedVectorEnv
from sr3_env.wrappers import QueryEmbeddingObservation, make_sb3_env

__version__ = "0.1.0"

register(
    id="RetrievalEmbed-v0",
    entry_point="sr3_env.env:RetrievalEmbedEnv",
    vector_entry_point="sr3_env.vector:RetrievalEmbedVectorEnv",
)
register(
    id="RetrievalRefine-v0",
    entry_point="sr3_env.refine:RetrievalRefineEnv",
    vector_entry_point="sr3_env.refine_vector:RetrievalRefineVectorEnv",
)

__all__ = [
    # environments
    "RetrievalEmbedEnv", "RetrievalEmbedVectorEnv", "RetrievalRefineEnv", "RetrievalRefineVectorEnv", "RetrievalTask",
    # data
    "BUNDLED_DATASETS", "RetrievalDataset", "available_splits", "carve_dev", "load_dataset", "load_mixture",
    "mix_datasets", "mixture_source", "parse_dataset_specs",
    # encoders
    "CallableEncoder", "Encoder", "HashingEncoder", "MiniLMEncoder", "SentenceTransformerEncoder", "encode_queries",
    "make_encoder",
    # the index
    "REFRESH_POLICIES", "IndexStats", "LazyIndex", "SearchResult",
    # rewards
    "STANDARD_METRICS", "RewardFn", "get_reward", "log_rank", "ndcg_at_k", "recall_at_k", "reciprocal_rank",
    "reward_names",
    # wrappers and baselines
    "QueryEmbeddingObservation", "RocchioPolicy", "make_sb3_env",
    # errors
    "DataError", "DatasetNotFoundError", "DependencyNotInstalled", "EncoderError", "InvalidActionError",
    "InvalidOptionError", "ResetNeeded", "SplitNotFoundError", "Sr3Error", "UnknownIdError",
]
