"""Encoders: what turns document text into the vectors the index holds.

The environment knows an encoder only through the `Encoder` protocol, so the agent's LLM, a frozen
sentence encoder, or a user's own object all fit. Built in: the frozen all-MiniLM-L6-v2 (the
default, in plain PyTorch: `sr3_env.minilm`), any sentence-transformers folder (an ``sr3 export`` of a
trained embedder among them), and a fast, dependency-free hashing encoder for tests.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sr3_env.errors import EncoderError, require
from sr3_env.minilm import MiniLMEncoder

logger = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """What the index needs from an encoder.

    Attributes:
        dim: length of every embedding.
        version: an integer that changes whenever the encoder's weights change; index rows made by
            an older version are *stale* and get re-encoded when they matter.

    ``encode_documents(texts)`` returns an array or tensor of shape ``(len(texts), dim)``. An
    encoder may also offer ``encode_queries(texts)`` (used to embed queries for baselines and
    observation wrappers; ``encode_documents`` is used otherwise) and a ``name`` string (which
    keys cached corpus embeddings of frozen encoders).
    """

    dim: int
    version: int

    def encode_documents(self, texts: Sequence[str]) -> Any: ...


def as_matrix(vectors: Any, rows: int, dim: int | None, who: str) -> np.ndarray:
    """Check an encoder's output (or any matrix of embeddings) and return it as a finite float32
    ``(rows, dim)`` numpy array (``dim`` None: any width); `EncoderError`, a ValueError, names ``who``."""
    if hasattr(vectors, "detach"):  # a torch tensor, possibly on a GPU or in bf16
        vectors = vectors.detach().float().cpu().numpy()
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise EncoderError(f"{who} returned {type(vectors).__name__}, which is not a numeric array: {error}") from None
    if matrix.ndim != 2 or matrix.shape[0] != rows or (dim is not None and matrix.shape[1] != dim):
        raise EncoderError(f"{who} returned shape {matrix.shape} for {rows} texts; expected ({rows}, {'dim' if dim is None else dim}) "
                           "(one row of `dim` values per text).")
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix)).any(axis=1).sum())
        raise EncoderError(f"{who} returned NaN or inf in {bad} of {rows} rows; check the model's weights and inputs.")
    return matrix


def encode_queries(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Embed queries with ``encoder.encode_queries`` when it has one, else ``encode_documents``."""
    method = getattr(encoder, "encode_queries", None) or encoder.encode_documents
    return as_matrix(method(list(texts)), len(texts), encoder.dim, f"{type(encoder).__name__}.encode_queries")


def _l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class HashingEncoder:
    """Signed feature hashing of words and character trigrams: fast, deterministic, no dependencies.

    Good enough to retrieve on lexical overlap, and its weights can be changed on purpose with
    `reseed`, which makes it the encoder of choice for tests of the lazy index.
    """

    _WORD = re.compile(r"\w+", re.UNICODE)

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        if int(dim) < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.version = 0
        self.name = f"hashing-{self.dim}-{self.seed}"

    def reseed(self, seed: int) -> None:
        """Change the hash function (the encoder's 'weights'); bumps `version`."""
        self.seed = int(seed)
        self.version += 1
        self.name = f"hashing-{self.dim}-{self.seed}"

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = self._WORD.findall(text.lower())
        features = [(word, 1.0) for word in words]
        for word in words:
            padded = f"<{word}>"
            features.extend((padded[i:i + 3], 0.3) for i in range(len(padded) - 2))
        return features

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        prefix = f"{self.seed}\0".encode()
        for row, text in enumerate(texts):
            for feature, weight in self._features(text):
                digest = zlib.crc32(prefix + feature.encode())
                sign = 1.0 if digest & 0x80000000 else -1.0
                out[row, digest % self.dim] += sign * weight
        return _l2_normalise(out)

    encode_queries = encode_documents


def folder_fingerprint(folder: Path) -> str:
    """12 hex digits that change when any file of ``folder`` changes (its path, size or time)."""
    digest = hashlib.sha1()
    for file in sorted(path for path in folder.rglob("*") if path.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


class SentenceTransformerEncoder:
    """A frozen sentence-transformers model loaded from a folder: ``make_encoder("path/to/folder")``.

    Documents get the model's ``"document"`` prompt and queries its ``"query"`` prompt when it has
    them (an ``sr3 export`` folder does: its document embeddings are the embedder's). The weights
    never change, so `version` stays 0 and the corpus embeddings are cached, keyed by `name`, which
    holds a fingerprint of the folder's files: a re-exported folder is encoded again.
    """

    frozen = True
    version = 0

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int = 64,
                 name: str | None = None) -> None:
        require("minilm", "A sentence-transformers encoder", "sentence_transformers")
        from sentence_transformers import SentenceTransformer

        folder = Path(path).expanduser().resolve()
        if not (folder / "modules.json").is_file():
            raise EncoderError(f"{folder} is not a sentence-transformers folder (it has no modules.json). Pass a "
                               "folder written by `sr3 export` or `SentenceTransformer.save`, or 'minilm' or 'hashing'.")
        self.path, self.batch_size = folder, batch_size
        self.name = name or f"{folder.name}-{folder_fingerprint(folder)}"
        self.model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        self.model.eval()
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())  # sentence-transformers 6 renamed the method

    def _encode(self, texts: Sequence[str], prompt_name: str) -> np.ndarray:
        prompt = {"prompt_name": prompt_name} if prompt_name in (self.model.prompts or {}) else {}
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=len(texts) > 2000, **prompt)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "document")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query")


class CallableEncoder:
    """Wrap a function ``fn(texts) -> array (len(texts), dim)`` as a frozen `Encoder`.

    ``dim`` is found by calling ``fn`` once on a probe text when it is not given. Bump
    ``version`` yourself if the function's behaviour changes.
    """

    def __init__(self, fn: Callable[[list[str]], Any], dim: int | None = None, name: str | None = None) -> None:
        self.fn = fn
        self.version = 0
        self.name = name
        if dim is None:
            probe = fn(["dimension probe"])
            shape = getattr(probe, "shape", None) or np.asarray(probe).shape
            if len(shape) != 2 or shape[0] != 1:
                raise EncoderError(f"The encoder function returned shape {tuple(shape)} for one text; expected (1, dim).")
            dim = int(shape[1])
        self.dim = int(dim)

    def encode_documents(self, texts: Sequence[str]) -> Any:
        return self.fn(list(texts))


ENCODER_NAMES = ("minilm", "hashing")


def make_encoder(spec: str | Path | Encoder | Callable[[list[str]], Any], device: str | None = None) -> Encoder:
    """Build an encoder from ``"minilm"``, ``"hashing"``, a sentence-transformers folder (``sr3 export``
    writes one), an `Encoder` object, or a callable."""
    if isinstance(spec, (str, Path)):
        name = str(spec).lower()
        if name == "minilm":
            return MiniLMEncoder(device=device)
        if name == "hashing":
            return HashingEncoder()
        if Path(spec).expanduser().is_dir():
            return SentenceTransformerEncoder(spec, device=device)
        raise ValueError(f"Unknown encoder {str(spec)!r}: use one of {list(ENCODER_NAMES)}, a sentence-transformers "
                         "folder (`sr3 export` writes one), an object with `dim`, `version` and "
                         "`encode_documents(texts)`, or a callable texts -> array.")
    if isinstance(spec, Encoder):
        if not isinstance(spec.dim, (int, np.integer)) or spec.dim < 1:
            raise EncoderError(f"{type(spec).__name__}.dim must be a positive integer, got {spec.dim!r}.")
        return spec
    if callable(spec):
        return CallableEncoder(spec)
    missing = [attr for attr in ("dim", "version", "encode_documents") if not hasattr(spec, attr)]
    raise EncoderError(f"{type(spec).__name__} is not an encoder: it lacks {missing}. An encoder needs `dim`, `version` "
                       "and `encode_documents(texts) -> (n, dim) array`.")
