"""Helpers shared by the benchmark scripts: synthetic encoders, timing, and a record of the machine.

The scripts run as ``python benchmarks/<script>.py``, which puts this folder on ``sys.path``, so they
import these with ``from _common import ...``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(dtype: str = "float32") -> dict:
    """Versions, threads and hardware, recorded in every result file."""
    import sr3_env

    info = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0],
            "sr3_env": getattr(sr3_env, "__version__", "unknown"), "threads": torch.get_num_threads(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "dtype": dtype,
            "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name()}
    return info


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def row_ids(texts) -> np.ndarray:
    """``["doc12", "doc7"]`` -> ``[12, 7]``: the synthetic encoders' documents are named by their row."""
    return np.fromiter((int(t[3:]) for t in texts), dtype=np.int64, count=len(texts))


class DriftingEncoder:
    """A cheap encoder whose output changes with ``version``.

    ``"doc123"`` -> normalise(base[123] + drift * noise[(123 * 7919 + version * 104729) % M]), with a
    fixed base table (one row per document) and a fixed noise table of M rows mixed by version.
    Every version is the same distance from ``base``: the output jitters, it does not wander off
    (`RandomWalkEncoder` does).
    """

    def __init__(self, base: np.ndarray, drift: float = 0.3, noise_rows: int = 4096, seed: int = 1) -> None:
        self.base = base
        self.dim = int(base.shape[1])
        self.drift = float(drift)
        rng = np.random.default_rng(seed)
        self.noise = unit_rows(rng.standard_normal((noise_rows, self.dim), dtype=np.float32))
        self.version = 0
        self.calls = 0

    def encode_rows(self, rows: np.ndarray) -> np.ndarray:
        mix = (rows * 7919 + self.version * 104729) % len(self.noise)
        return unit_rows(self.base[rows] + self.drift * self.noise[mix])

    def encode_documents(self, texts) -> np.ndarray:
        self.calls += 1
        return self.encode_rows(row_ids(texts))


class RandomWalkEncoder:
    """A cheap encoder that wanders like a model being trained: every `advance` moves each document's
    (unnormalised) vector by a fresh random step of norm ``step`` and bumps ``version``.

    Version v encodes ``"doc123"`` as normalise(base[123] + step * (n_1 + ... + n_v)[123]), with
    n_t a unit noise row picked from a fixed table by (row, t). So a row made k versions ago is off
    by about ``step * sqrt(k)``: the older the row, the worse (unlike `DriftingEncoder`). The
    current table (``current``, N x d) is kept, so an encode is a look-up, and it doubles as the
    exact corpus under the current version.

    ``seconds_per_row`` adds a sleep of len(texts) x seconds_per_row to every ``encode_documents``
    call: it models the wall time of a real encoder (not its CPU load).
    """

    def __init__(self, base: np.ndarray, step: float = 0.05, noise_rows: int = 4096, seed: int = 1,
                 seconds_per_row: float = 0.0) -> None:
        self.dim = int(base.shape[1])
        self.step = float(step)
        self.seconds_per_row = float(seconds_per_row)
        rng = np.random.default_rng(seed)
        self.noise = unit_rows(rng.standard_normal((noise_rows, self.dim), dtype=np.float32))
        self._rows = np.arange(len(base), dtype=np.int64)
        self.position = base.astype(np.float32, copy=True)
        self.current = unit_rows(self.position)
        self.version = 0
        self.calls = 0

    def advance(self) -> None:
        """One more version: every row takes one random step."""
        self.version += 1
        mix = (self._rows * 7919 + self.version * 104729) % len(self.noise)
        self.position += self.step * self.noise[mix]
        self.current = unit_rows(self.position)

    def encode_documents(self, texts) -> np.ndarray:
        self.calls += 1
        if self.seconds_per_row:
            time.sleep(len(texts) * self.seconds_per_row)
        return self.current[row_ids(texts)]


class FixedEncoder:
    """The encoder of a corpus that never changes (nothing is ever stale, nothing re-encoded)."""

    version = 0

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode_documents(self, texts):
        raise RuntimeError("the benchmark's corpus is fixed; nothing should be re-encoded")


def write_json(path: str | Path, results: dict) -> None:
    """Write a benchmark's results, creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2))


def timed(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": len(times)}
