"""What the single and the vectorised environment share: building the pieces and scoring actions.

`RetrievalTask` owns the dataset, the encoder, the lazy index and the reward function. Its
`score` turns a batch of query rows and actions into rewards and per-query ``info`` dicts with one
index search, which is what lets `RetrievalEmbedVectorEnv` score B queries in one call.
"""

from __future__ import annotations

import math
import string
from typing import Any

import numpy as np

from sr3_env.cache import cache_dir, load_matrix, save_matrix
from sr3_env.data import RetrievalDataset, load_dataset
from sr3_env.encoders import Encoder, as_matrix, make_encoder
from sr3_env.errors import InvalidActionError, Sr3Error
from sr3_env.index import LazyIndex
from sr3_env.rewards import STANDARD_METRICS, RewardFn, get_reward


_BASE_CHARSET = frozenset(string.printable) - frozenset("\x0b\x0c")


def query_charset(dataset: RetrievalDataset) -> frozenset[str]:
    """Printable ASCII plus every character the dataset's queries use."""
    return _BASE_CHARSET.union(*map(set, dataset.query_texts))


def _cached_corpus_embeddings(dataset: RetrievalDataset, encoder: Encoder) -> np.ndarray | None:
    """Corpus embeddings of a frozen encoder, computed once per (corpus, encoder) and kept on disk."""
    name = getattr(encoder, "name", None)
    if not (getattr(encoder, "frozen", False) and name):
        return None  # an encoder whose weights may change must never be served from a cache
    path = cache_dir() / "embeddings" / f"{dataset.fingerprint()}-{name}.npy"
    cached = load_matrix(path, len(dataset.doc_ids), encoder.dim)
    if cached is not None:
        return cached
    vectors = as_matrix(encoder.encode_documents(dataset.documents), len(dataset.doc_ids), encoder.dim,
                        f"{type(encoder).__name__}.encode_documents")
    save_matrix(path, vectors)
    return vectors


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> str | None:
    """``render_mode`` when the environment supports it (``metadata["render_modes"]``) or None; else ValueError."""
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode={render_mode!r} is not supported; use one of {metadata['render_modes']} or None.")
    return render_mode


def validate_actions(actions: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Check actions and return them L2-normalised as float32 of ``shape``.

    Only the direction counts: the norm is taken in float64 after scaling by the largest value, so
    huge (1e300) and subnormal (1e-310) embeddings normalise like any other."""
    if hasattr(actions, "detach"):  # a torch tensor (any device, any dtype: bf16 has no numpy twin)
        actions = actions.detach().cpu()
        if actions.is_complex():
            raise InvalidActionError(f"The action must be real-valued, got a complex tensor; expected shape {shape}.")
        actions = actions.double().numpy()
    if isinstance(actions, np.ndarray) and actions.dtype.kind in "mMSUV":  # dates, durations, text, records
        raise InvalidActionError(f"The action must hold numbers, got an array of dtype {actions.dtype}, which cannot be "
                                 f"cast to float32 meaningfully; expected a float array of shape {shape}.")
    try:
        complex_values = np.iscomplexobj(actions)
    except (TypeError, ValueError, OverflowError):  # a ragged or odd object: the cast below says what is wrong
        complex_values = False
    if complex_values:
        raise InvalidActionError(f"The action must be real-valued, got a complex array; expected shape {shape}.")
    try:
        array = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidActionError(f"The action must be a numeric array of shape {shape} (a query embedding), "
                                 f"got {type(actions).__name__} that cannot be cast to float32.") from None
    if array.shape != shape:
        raise InvalidActionError(f"The action has shape {array.shape}; expected {shape} (the query embedding"
                                 f"{'s, one row per sub-environment' if len(shape) == 2 else ''}).")
    rows = array.reshape(-1, shape[-1])
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise InvalidActionError(f"The action holds NaN or inf (in {int(bad.sum())} of {len(rows)} embeddings, first at index "
                                 f"{int(np.argmax(bad))}); every value must be finite.")
    scale = np.abs(rows).max(axis=1, keepdims=True)
    if (scale == 0).any():
        raise InvalidActionError(f"The action is the zero vector (embedding {int(np.argmax(scale[:, 0] == 0))}), "
                                 "which has no direction to rank documents by.")
    rows = rows / scale  # largest value 1: the norm below can neither overflow nor underflow
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).reshape(shape).astype(np.float32)


class RetrievalTask:
    """The dataset, encoder, lazily refreshed index and reward of a `RetrievalEmbed-v0` environment."""

    def __init__(self, dataset: str | RetrievalDataset | Any = "semanlink", split: str = "test", encoder: Any = "minilm",
                 reward: str | RewardFn = "reciprocal_rank", top_k: int = 100, refresh: str = "lazy",
                 refresh_every: int | None = None, refresh_budget: int = 0, index: LazyIndex | None = None,
                 device: str | None = None, candidate_search: str = "torch", dtype: Any = "float32",
                 process_group: Any = None) -> None:
        if int(top_k) < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")
        self.dataset = load_dataset(dataset, split=split)
        self.reward_fn = get_reward(reward)
        self.reward_name = reward if isinstance(reward, str) else getattr(reward, "__name__", "custom")
        self.top_k = min(int(top_k), len(self.dataset.doc_ids))
        self.metric_fns = {name: get_reward(name) for name in STANDARD_METRICS}
        if index is not None:
            if len(index) != len(self.dataset.doc_ids):
                raise ValueError(f"The given index has {len(index)} rows but the corpus has {len(self.dataset.doc_ids)} documents.")
            self.index, self.encoder = index, index.encoder
        else:
            self.encoder = make_encoder(encoder, device=device)
            self.index = LazyIndex(self.dataset.documents, self.encoder, refresh=refresh, refresh_every=refresh_every,
                                   refresh_budget=refresh_budget, device=device, candidate_search=candidate_search,
                                   dtype=dtype, process_group=process_group, embeddings=_cached_corpus_embeddings(self.dataset, self.encoder))
        self.dim = int(self.encoder.dim)
        self._gold = [self.dataset.relevant_rows(q) for q in self.dataset.query_ids]  # (rows, grades) per query

    def describe(self) -> dict[str, Any]:
        """The task in a few fields, for logs and `render`."""
        return {"dataset": self.dataset.name, "split": self.dataset.split, "documents": len(self.dataset.doc_ids),
                "queries": len(self.dataset.query_ids), "encoder": type(self.encoder).__name__, "dim": self.dim,
                "reward": self.reward_name, "top_k": self.top_k, "refresh": self.index.refresh_policy}

    def _reward(self, ranks: list[int], grades: list[int], n_docs: int) -> float:
        value = self.reward_fn(ranks, grades, n_docs)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise Sr3Error(f"The reward function {self.reward_name!r} returned {type(value).__name__}; it must return one float "
                           "per query (signature fn(ranks, relevance, n_docs) -> float).") from None
        if not math.isfinite(value):
            raise Sr3Error(f"The reward function {self.reward_name!r} returned {value} for ranks {ranks}; it must be finite.")
        return value

    def score(self, query_rows: np.ndarray, unit_actions: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Rewards and infos for queries ``query_rows`` acted on with ``unit_actions`` (B, dim), in one search."""
        gold = [self._gold[row] for row in query_rows]
        result = self.index.search(unit_actions, [rows for rows, _ in gold], k=self.top_k)
        n_docs = len(self.dataset.doc_ids)
        doc_ids = self.dataset.doc_ids
        stats = result.stats.as_dict()
        rewards = np.empty(len(query_rows), dtype=np.float32)
        infos = []
        for b, row in enumerate(query_rows):
            rows, grades = gold[b]
            ranks, grade_list = result.gold_ranks[b].tolist(), grades.tolist()
            rewards[b] = self._reward(ranks, grade_list, n_docs)
            infos.append({
                "query_id": self.dataset.query_ids[row],
                "gold_ids": [doc_ids[r] for r in rows],
                "gold_ranks": ranks,
                "rank": int(min(ranks)),
                "top_ids": [doc_ids[r] for r in result.top_rows[b]],
                "top_scores": result.top_scores[b],
                "metrics": {name: fn(ranks, grade_list, n_docs) for name, fn in self.metric_fns.items()},
                "index": stats,
            })
        return rewards, infos

    def render_text(self, query_row: int, info: dict[str, Any] | None, top_n: int = 5) -> str:
        """A plain-text view of a query, its top documents and the gold rank."""
        query_id = self.dataset.query_ids[query_row]
        lines = [f"query {query_id}: {self.dataset.query_texts[query_row]}"]
        if info is None:
            return "\n".join(lines + ["(no action yet)"]) + "\n"
        gold = set(info["gold_ids"])
        lines.append(f"best gold rank: {info['rank']} of {len(self.dataset.doc_ids)}  "
                     f"({self.reward_name} = {info.get('reward', float('nan')):.4f})")
        for position, (doc_id, score) in enumerate(zip(info["top_ids"][:top_n], info["top_scores"][:top_n]), start=1):
            row = self.dataset.doc_row[doc_id]
            text = (self.dataset.titles[row] or self.dataset.texts[row]).replace("\n", " ")
            mark = " *gold*" if doc_id in gold else ""
            lines.append(f"  {position:>3}. {score:+.3f}  {doc_id}  {text[:70]}{mark}")
        return "\n".join(lines) + "\n"


class TaskViews:
    """The task's dataset, encoder and index as attributes of an environment that holds it as ``self.task``."""

    task: RetrievalTask

    @property
    def dataset(self) -> Any:
        return self.task.dataset

    @property
    def encoder(self) -> Any:
        return self.task.encoder

    @property
    def index(self) -> Any:
        return self.task.index
