"""Random states of Python, numpy and torch (and CUDA), as a checkpoint keeps them and gives them
back: tensors, lists and numbers that ``torch.load(weights_only=True)`` reads."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) random states as tensors, lists and ints (loadable with weights_only)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                            "pos": int(numpy_state["state"]["pos"])}
    numpy_state["has_gauss"], numpy_state["gauss"] = int(numpy_state["has_gauss"]), float(numpy_state["gauss"])
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_python_state(state["python"]))
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        key = numpy_state["state"]["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        numpy_state = {**numpy_state, "state": {**numpy_state["state"], "key": key.astype(np.uint32)}}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(state: Any) -> tuple:
    """``random.getstate()`` as ``random.setstate`` wants it (tuples, even if stored as lists)."""
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss
