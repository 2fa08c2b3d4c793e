"""Training checkpoints: written safely, verified, found again by ``--resume``, checked against the config.

A checkpoint is a folder ``checkpoint-<step>`` holding ``state.pt`` (weights, optimiser, random
states, and whatever else the trainer passes) and ``checksum.json`` (its size and SHA-256).

- It is written under a temporary name (``.checkpoint-<step>.partial``), synced to disk, read back
  and verified, and only then renamed into place (the folder is synced again after the rename). An
  interrupted run leaves the previous checkpoints and perhaps a partial folder, never half of one.
- The newest ``keep`` checkpoints (2 by default) are kept; older ones are removed only after the
  new one is in place, so there is always a verified predecessor to fall back to.
- `load_latest` checks the checksum of the newest checkpoint; a damaged one is moved aside
  (``damaged-checkpoint-<step>``) with a warning naming it, and the previous one is loaded.
- Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain
  Python data only (numpy arrays and random states are stored as tensors, lists and ints), so
  loading one cannot run code.
- A write that fails (a full disk, a file-size limit) raises `CheckpointError` naming the file and
  the cause; the earlier checkpoints are untouched.

``SR3_KILL_AT=<point>@<step>`` makes the process SIGKILL itself at a point of the checkpoint write
of that step (``mid-write``, ``before-rename``, ``before-prune``): the crash tests use it to die at
an exact moment (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from sr3_agent.config import ConfigError, current_names
from sr3_agent.training.distributed import is_main_process
from sr3_agent.training.rng import rng_state, set_rng_state
from sr3_env.errors import Sr3Error

logger = logging.getLogger(__name__)

_PREFIX = "checkpoint-"
STATE_FILE = "state.pt"
CHECKSUM_FILE = "checksum.json"
DAMAGED_PREFIX = "damaged-"
#: config fields that may change between a run and its resumption (output_dir: a run folder copied or moved
#: elsewhere, e.g. to continue a finished 60-step run to 120 steps beside it, resumes from there;
#: activation_checkpointing changes memory, not results: a run that ran out of memory may resume with it on;
#: generation_cache changes the speed of generation, not what it samples from)
RESUMABLE_CHANGES = frozenset({"steps", "resume", "save_every", "log_every", "device", "output_dir",
                               "activation_checkpointing", "generation_cache"})


class CheckpointError(Sr3Error):
    """A checkpoint could not be written, or no checkpoint of a run could be read (the message names the files)."""


# -- random states, as plain data ----------------------------------------------------------------

def plain(value: Any) -> Any:
    """``value`` with numpy arrays turned into tensors and numpy scalars into Python numbers, so that
    ``torch.load(weights_only=True)`` reads it back. Containers with nothing to convert are returned
    as they are (a model's ``state_dict`` keeps its metadata)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value)).clone()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        converted = {key: plain(item) for key, item in value.items()}
        if all(converted[key] is item for key, item in value.items()):
            return value
        out = type(value)(converted) if type(value) is not dict else converted
        if hasattr(value, "_metadata"):
            out._metadata = value._metadata
        return out
    if isinstance(value, (list, tuple)):
        converted = [plain(item) for item in value]
        if all(a is b for a, b in zip(converted, value)):
            return value
        return type(value)(converted) if type(value) in (list, tuple) else converted
    return value


# -- writing ---------------------------------------------------------------------------------------

def _kill_point(point: str, step: int) -> None:
    """Die here (SIGKILL, like a preempted job) when ``SR3_KILL_AT`` names this point and step."""
    if os.environ.get("SR3_KILL_AT") == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


class _HashingWriter:
    """A file wrapper for ``torch.save``: hashes and counts what is written, keeps the OS error of a
    failed write (torch reports it as a bare RuntimeError), and can die half-way (``mid-write``)."""

    def __init__(self, handle: BinaryIO, step: int) -> None:
        self.handle, self.step = handle, step
        self.digest, self.size, self.error = hashlib.sha256(), 0, None

    def write(self, data: Any) -> int:
        if self.size and os.environ.get("SR3_KILL_AT") == f"mid-write@{self.step}":
            self.handle.write(bytes(memoryview(data))[:memoryview(data).nbytes // 2])
            self.handle.flush()
            os.fsync(self.handle.fileno())
            _kill_point("mid-write", self.step)
        try:
            written = self.handle.write(data)
        except OSError as error:
            self.error = error
            raise
        self.digest.update(data)
        self.size += memoryview(data).nbytes
        return written

    def flush(self) -> None:
        self.handle.flush()


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_state(path: Path, state: dict[str, Any], step: int) -> dict[str, Any]:
    """``torch.save`` to ``path``, synced to disk; returns the checksum record."""
    with open(path, "wb") as handle:
        writer = _HashingWriter(handle, step)
        try:
            torch.save(state, writer)
        except RuntimeError as error:
            if writer.error is not None:  # the real cause (ENOSPC, EFBIG, EIO...)
                raise writer.error from error
            raise
        handle.flush()
        os.fsync(handle.fileno())
    return {"file": STATE_FILE, "size": writer.size, "sha256": writer.digest.hexdigest(), "step": step}


def _write_json(path: Path, record: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        handle.write(json.dumps(record, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _discard(folder: Path) -> None:
    """Remove a checkpoint folder: first renamed out of the list (atomic), then deleted, so a crash
    half-way through never leaves a folder that looks like a checkpoint."""
    doomed = folder.with_name(f".{folder.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def save_checkpoint(output_dir: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as ``output_dir/checkpoint-<step>`` and drop all but the newest ``keep``.

    The new checkpoint is written, synced, read back and verified before it is renamed into place;
    only then are older ones removed. A failed write raises `CheckpointError` (the earlier
    checkpoints are untouched).
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{_PREFIX}{step:07d}"
    staging = output_dir / f".{final.name}.partial"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        record = _write_state(staging / STATE_FILE, {**plain(state), "step": step, "rng": rng_state()}, step)
        _write_json(staging / CHECKSUM_FILE, record)
        _fsync_dir(staging)
        problem = verify_checkpoint(staging)
        if problem is not None:
            raise CheckpointError(f"the checkpoint of step {step} did not verify after writing ({problem}); "
                                  f"{staging} is left for inspection. Check the disk.")
        _kill_point("before-rename", step)
        if final.exists():  # the same step saved again (a run resumed from an older checkpoint)
            _discard(final)
        staging.rename(final)
        _fsync_dir(output_dir)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        kept = [p.name for p in list_checkpoints(output_dir)]
        raise CheckpointError(
            f"Could not write the checkpoint of step {step} in {output_dir}: {error.strerror or error} "
            f"({type(error).__name__}{', file ' + str(error.filename) if error.filename else ''}). Nothing else was "
            f"changed: {'the earlier checkpoints ' + ', '.join(kept) + ' are intact' if kept else 'no earlier checkpoint exists'}. "
            "Free some space (or raise the file-size limit, or fix the folder's permissions), then continue with "
            "--resume.") from error
    _kill_point("before-prune", step)
    for old in list_checkpoints(output_dir)[:-keep]:
        _discard(old)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders in ``output_dir`` (verified or not), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if p.name.startswith(_PREFIX) and (p / STATE_FILE).is_file())


# -- reading ---------------------------------------------------------------------------------------

def verify_checkpoint(folder: str | Path) -> str | None:
    """None when ``folder``'s ``state.pt`` matches its ``checksum.json`` (size, then SHA-256);
    otherwise what is wrong. A checkpoint written before checksums existed has none: None (with a
    warning), and its loading is the only check."""
    folder = Path(folder)
    path, record_path = folder / STATE_FILE, folder / CHECKSUM_FILE
    if not path.is_file():
        return f"{path} is missing"
    if not record_path.is_file():
        logger.warning("%s has no %s (written by an earlier sr3): it cannot be verified", folder, CHECKSUM_FILE)
        return None
    try:
        record = json.loads(record_path.read_text())
        expected_size, expected_hash = int(record["size"]), str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{record_path} is unreadable ({error})"
    size = path.stat().st_size
    if size != expected_size:
        return f"{path} has {size} bytes, its checksum file says {expected_size} (truncated or overwritten)"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != expected_hash:
        return f"{path} does not match its SHA-256 in {CHECKSUM_FILE} (its bytes changed after it was written)"
    return None


#: What checkpoints written before the switch to plain data need: numpy arrays and scalars (no code runs).
_LEGACY_NUMPY = [np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray, np.dtype,
                 np.dtypes.UInt32DType, np.dtypes.Int64DType, np.dtypes.Float64DType]


def _load_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    if (folder / CHECKSUM_FILE).is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:  # an earlier sr3 stored numpy random states and arrays
        with torch.serialization.safe_globals(_LEGACY_NUMPY):
            state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "step" not in state or "rng" not in state:
        raise ValueError(f"{path} is not an sr3 training checkpoint (no step or random states in it)")
    return state


def load_latest(output_dir: str | Path) -> dict[str, Any]:
    """The newest intact checkpoint's state (random states restored); a clear error when there is none.

    A newest checkpoint that fails its checksum or cannot be read is moved aside as
    ``damaged-checkpoint-<step>`` (by the main process) with a warning, and the one before it is used.
    """
    output_dir = Path(output_dir)
    found = list_checkpoints(output_dir)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint in {output_dir}. Run without --resume to start, or point "
                                "--output-dir at the folder of the run to continue.")
    damaged: list[tuple[Path, str]] = []
    for folder in reversed(found):
        problem = verify_checkpoint(folder)
        if problem is None:
            try:
                state = _load_state(folder)
            except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
                problem = f"{folder / STATE_FILE} cannot be loaded safely: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        if problem is not None:
            damaged.append((folder, problem))
            continue
        for bad, reason in damaged:
            logger.warning("checkpoint %s is damaged (%s); resuming from %s instead", bad, reason, folder.name)
            _set_aside(bad)
        set_rng_state(state["rng"])
        return state
    details = "; ".join(f"{folder.name}: {reason}" for folder, reason in damaged)
    raise CheckpointError(f"--resume: no intact checkpoint in {output_dir} ({details}). Start again without --resume "
                          "in a new --output-dir (or restore the files from a backup).")


def _set_aside(folder: Path) -> None:
    """Rename a damaged checkpoint so it is neither resumed from nor counted among the kept ones
    (only the main process renames; the files stay for inspection)."""
    if not is_main_process():
        return
    target = folder.with_name(DAMAGED_PREFIX + folder.name)
    shutil.rmtree(target, ignore_errors=True)
    try:
        folder.rename(target)
        logger.warning("moved the damaged checkpoint aside to %s", target)
    except OSError as error:
        logger.warning("could not move the damaged checkpoint %s aside (%s)", folder, error)


# -- the run's config --------------------------------------------------------------------------------

def save_config(output_dir: str | Path, config: Any) -> None:
    path = Path(output_dir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(".config.json.partial")
    _write_json(partial, dataclasses.asdict(config))
    os.replace(partial, path)


def check_resumable(output_dir: str | Path, config: Any) -> None:
    """Refuse to resume a run whose config changed in a way that would mix two experiments."""
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} is missing; it is written when a run starts. Start without --resume.")
    saved = current_names(type(config), json.loads(path.read_text()), str(path), warn=False)  # old option names
    current = dataclasses.asdict(config)
    # a setting added after the run started was, in effect, at its default value then
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    saved = {k: saved.get(k, defaults.get(k)) for k in current}
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved[k] != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(f"--resume with a different config ({details}). Use the saved values "
                          f"(see {path}) or a new --output-dir.")


# -- stopping between steps ------------------------------------------------------------------------

#: The signals that ask a training loop to stop after its current step: Ctrl-C, and the SIGTERM that
#: schedulers (Slurm, Kubernetes, torchrun) send before they kill a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_last_stop: list[int] = []


class StopFlag:
    """Set by the first SIGINT or SIGTERM inside `graceful_interrupt`; the loop checks it between steps."""

    requested = False
    signal: int | None = None  #: the signal that set it


def stop_exit_code() -> int:
    """The exit status of a command stopped by `graceful_interrupt`: 128 + the signal (130 for Ctrl-C,
    143 for SIGTERM), as a shell reports a process ended by that signal."""
    return 128 + (_last_stop[-1] if _last_stop else signal.SIGINT)


@contextlib.contextmanager
def graceful_interrupt():
    """The first Ctrl-C (SIGINT) or SIGTERM asks the training loop to stop after the current step (it
    then saves a checkpoint); a Ctrl-C after that interrupts at once, a repeated SIGTERM does not (a
    launcher may forward the one the scheduler sent). Outside the main thread it changes nothing."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested:
            if signum == signal.SIGINT:  # a second Ctrl-C: the user means it
                raise KeyboardInterrupt
            # SIGTERM again: launchers forward the scheduler's SIGTERM to processes that got it already
            # (torchrun does); the scheduler's SIGKILL, not a second SIGTERM, is the hard stop
            logger.warning("SIGTERM again: still finishing this step (Ctrl-C aborts at once)")
            return
        flag.requested, flag.signal = True, signum
        _last_stop.append(signum)
        logger.warning("%s: finishing this step and saving a checkpoint (Ctrl-C to abort at once)",
                       signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)
