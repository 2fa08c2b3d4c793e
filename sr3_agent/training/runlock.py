"""One run per output folder: a lock held for the whole run.

`sr3 sft`, `sr3 rl` and `sr3 train` take an operating-system lock on ``<output_dir>/.sr3.lock``
(the `filelock` package: ``flock`` on Linux and macOS, ``LockFileEx`` on Windows) before they read or
write anything there, and hold it until they return. A second run into the same folder, with or
without ``--resume``, is refused at once with `RunLockedError`, whose message names the running
process (its pid, host, start time and command line, read from ``.sr3.lock.json``). The operating
system releases the lock when its process dies, even by SIGKILL, so a killed run never blocks the
next one. Under ``accelerate launch`` only the main process takes it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sr3_env.errors import Sr3Error

logger = logging.getLogger(__name__)

LOCK_FILE = ".sr3.lock"
OWNER_FILE = ".sr3.lock.json"

F = TypeVar("F", bound=Callable[..., Any])


class RunLockedError(Sr3Error):
    """Another run is writing into this output folder (the message names its process)."""


class OutputDirError(Sr3Error):
    """The output folder cannot be created or written (the message names it and the cause)."""


def prepare_output_dir(output_dir: str | Path) -> Path:
    """Create ``output_dir`` if needed and check that it can be written; `OutputDirError` if not."""
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sr3-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputDirError(f"Cannot write to the output folder {folder}: {error.strerror or error}"
                             f"{' (' + str(error.filename) + ')' if error.filename else ''}. Choose a folder you can "
                             "write to with --output-dir, or fix its permissions.") from error
    return folder


def describe_owner(folder: Path) -> str:
    """Who holds the lock of ``folder``, from the owner file the holder wrote."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        return (f"pid {owner['pid']} on {owner['host']}, started {owner['started']}, running "
                f"`{' '.join(owner['command'])}`")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


@contextlib.contextmanager
def run_lock(output_dir: str | Path, *, main: bool | None = None) -> Iterator[Path | None]:
    """Hold the output folder's lock for the ``with`` block (yields the lock file's path).

    ``main`` (default: this is rank 0 of the launched processes) says whether this process takes
    the lock; the other processes of a data-parallel run take none.
    """
    from filelock import FileLock, Timeout

    from sr3_agent.training.distributed import is_main_process

    if not (is_main_process() if main is None else main):
        yield None
        return
    folder = prepare_output_dir(output_dir)
    path = folder / LOCK_FILE
    # preserve_lock_file: deleting the file on release would let two later runs lock two different files
    lock = FileLock(path, timeout=0, preserve_lock_file=True, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunLockedError(f"Another run is writing into {folder}: {describe_owner(folder)}. Wait for it to finish "
                             "(or stop it), or choose another --output-dir. (A run that was killed leaves no lock "
                             "behind: the lock goes with its process.)") from None
    except OSError as error:
        raise OutputDirError(f"Cannot lock {path}: {error.strerror or error}. Choose an output folder on a file system "
                             "that supports file locks (most local and network file systems do).") from error
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "command": [Path(sys.argv[0]).name, *sys.argv[1:]]}
        (folder / OWNER_FILE).write_text(json.dumps(owner) + "\n")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            (folder / OWNER_FILE).unlink()
        lock.release()


def holds_run_lock(train: F) -> F:
    """Decorate ``train(config, ...)`` to hold the lock of ``config.output_dir`` while it runs."""

    @functools.wraps(train)
    def locked(config: Any, *args: Any, **kwargs: Any) -> Any:
        with run_lock(config.output_dir):
            return train(config, *args, **kwargs)

    return locked  # type: ignore[return-value]
