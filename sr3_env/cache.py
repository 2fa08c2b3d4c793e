"""sr3's cache folder and the corpus embeddings kept in it: ``cache_dir()`` is ``$SR3_CACHE_DIR``,
else ``~/.cache/sr3``; `load_matrix` reads a cached ``.npy`` back (checked: an unreadable or wrong file
is ignored with a warning, and re-encoded), and `save_matrix` writes one atomically (a crash never
leaves half a file).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sr3_env.encoders import as_matrix

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where sr3 caches converted models and corpus embeddings: ``$SR3_CACHE_DIR``, else ``~/.cache/sr3``."""
    return Path(os.environ.get("SR3_CACHE_DIR") or Path.home() / ".cache" / "sr3")


def load_matrix(path: Path, rows: int, dim: int | None = None) -> np.ndarray | None:
    """The ``(rows, dim)`` float32 matrix cached at ``path``; None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    try:
        return as_matrix(np.load(path), rows, dim, f"cached embeddings {path}")
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable embedding cache %s (%s); re-encoding", path, error)
        return None


def save_matrix(path: Path, matrix: np.ndarray) -> None:
    """Write ``matrix`` to ``path`` (a ``.npy``) atomically: a crash never leaves a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, matrix)
    os.replace(partial, path)
