"""Training checkpoints: written atomically, found again by ``--resume``, checked against the config.

A checkpoint is a folder ``checkpoint-<step>`` holding ``state.pt`` (weights, optimiser, random
states, and whatever else the trainer passes). It is written under a temporary name and renamed,
so an interrupted run leaves either the previous checkpoint or the new one, never half of one.
Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr3_agent.config import ConfigError

logger = logging.getLogger(__name__)

_PREFIX = "checkpoint-"
#: config fields that may change between a run and its resumption
RESUMABLE_CHANGES = frozenset({"steps", "resume", "save_every", "log_every", "device"})


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str | Path, step: int, state: dict[str, Any], keep: int = 1) -> Path:
    """Write ``state`` as ``output_dir/checkpoint-<step>`` and drop all but the newest ``keep``."""
    output_dir = Path(output_dir)
    final = output_dir / f"{_PREFIX}{step:07d}"
    staging = output_dir / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save({**state, "step": step, "rng": rng_state()}, staging / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if p.name.startswith(_PREFIX) and (p / "state.pt").is_file())


def load_latest(output_dir: str | Path) -> dict[str, Any]:
    """The newest checkpoint's state (random states restored); a clear error when there is none."""
    found = list_checkpoints(output_dir)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint in {output_dir}. Run without --resume to start, or point "
                                "--output-dir at the folder of the run to continue.")
    state = torch.load(found[-1] / "state.pt", map_location="cpu", weights_only=False)
    set_rng_state(state["rng"])
    return state


def save_config(output_dir: str | Path, config: Any) -> None:
    path = Path(output_dir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2))


def check_resumable(output_dir: str | Path, config: Any) -> None:
    """Refuse to resume a run whose config changed in a way that would mix two experiments."""
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} is missing; it is written when a run starts. Start without --resume.")
    saved = json.loads(path.read_text())
    current = dataclasses.asdict(config)
    # a setting added after the run started was, in effect, at its default value then
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    saved = {k: saved.get(k, defaults.get(k)) for k in current}
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved[k] != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(f"--resume with a different config ({details}). Use the saved values "
                          f"(see {path}) or a new --output-dir.")


class StopFlag:
    """Set by the first Ctrl-C inside `graceful_interrupt`; the loop checks it between steps."""

    requested = False


@contextlib.contextmanager
def graceful_interrupt():
    """The first Ctrl-C (SIGINT) asks the training loop to stop after the current step (it then saves a
    checkpoint); a second one interrupts at once. Outside the main thread it changes nothing."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        logger.warning("interrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
