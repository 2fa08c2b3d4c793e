"""sr3_env: the `RetrievalEmbed-v0` and `RetrievalRefine-v0` Gymnasium environments and their lazily
refreshed corpus index.

``import sr3_env`` registers the environments; heavy dependencies (FAISS, sentence-transformers)
are imported only when they are used.
"""

from gymnasium.envs.registration import register

from sr3_env.data import BUNDLED_DATASETS, RetrievalDataset, available_splits, carve_dev, load_dataset
from sr3_env.encoders import CallableEncoder, Encoder, HashingEncoder, MiniLMEncoder, make_encoder
from sr3_env.errors import (DataError, DatasetNotFoundError, DependencyNotInstalled, EncoderError, InvalidActionError,
                            InvalidOptionError, ResetNeeded, SplitNotFoundError, Sr3Error, UnknownIdError)
from sr3_env.index import REFRESH_POLICIES, IndexStats, LazyIndex, SearchResult
from sr3_env.mixture import load_mixture, mix_datasets, mixture_source, parse_dataset_specs

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
    "BUNDLED_DATASETS", "REFRESH_POLICIES", "CallableEncoder", "DataError", "DatasetNotFoundError", "DependencyNotInstalled",
    "Encoder", "EncoderError", "HashingEncoder", "IndexStats", "InvalidActionError", "InvalidOptionError", "LazyIndex", "MiniLMEncoder",
    "ResetNeeded", "RetrievalDataset", "SearchResult", "SplitNotFoundError", "Sr3Error", "available_splits", "carve_dev", "UnknownIdError", "load_dataset", "load_mixture", "make_encoder",
    "mix_datasets", "mixture_source", "parse_dataset_specs",
]
