"""Logs a person can read: the ``sr3`` command's console and file logging, and progress bars that do
not flood a log file.

- `setup_logging`: one console handler whose *level* filters records (WARNING, or INFO with
  ``-v``). A handler level is needed, not only a root level: ``bm25s`` sets its own logger to DEBUG
  when imported, so with ``logging.basicConfig`` its "Building index from IDs objects" came through.
- `progress_for_logs`: when stderr is not a terminal (a log file, a pipe, CI), tqdm bars refresh at
  most every ``interval`` seconds and each refresh is one line, instead of hundreds of carriage-return
  updates per minute; the Hugging Face libraries' download/loading bars are turned off.
- `log_file`: a file handler for the duration of a command (``sr3 train`` writes ``train.log`` into
  its output folder).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_console: logging.Handler | None = None  #: the handler `setup_logging` installed


class LineProgressStream(io.TextIOBase):
    """A text stream that turns tqdm's in-place refreshes (``"\\r" + status``) into whole lines.

    Everything else is written through unchanged. Meant for a stderr that is not a terminal.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._last_status: str | None = None  #: the status line just written (None after other output)

    def write(self, text: str) -> int:
        if text.startswith("\r"):
            status = text.strip("\r").rstrip()
            if status and status != self._last_status:  # tqdm repeats the final status when it closes
                self.stream.write(status + "\n")
            self._last_status = status or self._last_status
            return len(text)
        written = len(text)
        if self._last_status is not None and text.startswith("\n"):
            text = text[1:]  # the newline tqdm ends a bar with: the status line already has one
        if text:
            self._last_status = None
            self.stream.write(text)
        return written

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


def progress_for_logs(interval: float = 30.0) -> bool:
    """When stderr is not a terminal, make progress bars log-friendly (see the module docstring).

    Settings already in the environment (``TQDM_MININTERVAL``, ``HF_HUB_DISABLE_PROGRESS_BARS``)
    win. Returns True when stderr was wrapped.
    """
    if sys.stderr.isatty() or isinstance(sys.stderr, LineProgressStream):
        return False
    os.environ.setdefault("TQDM_MININTERVAL", str(interval))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.stderr = LineProgressStream(sys.stderr)
    return True


def setup_logging(verbose: bool = False) -> logging.Handler:
    """Console logging for the ``sr3`` command: WARNING and above, INFO and above with ``verbose``.

    The root logger passes INFO so that a `log_file` handler sees it; the console handler's own
    level decides what the terminal shows (which also silences dependencies' DEBUG records).
    """
    global _console
    root = logging.getLogger()
    if _console is not None:  # called again in one process (tests): replace, do not duplicate
        root.removeHandler(_console)
    _console = logging.StreamHandler(sys.stderr)
    _console.setLevel(logging.INFO if verbose else logging.WARNING)
    _console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(_console)
    root.setLevel(logging.INFO)
    return _console


@contextmanager
def log_file(path: str | Path, level: int = logging.INFO) -> Iterator[Path]:
    """Also write log records (INFO and above, with times) to ``path``, appended, while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(min(previous_level or level, level))
    try:
        yield path
    except BaseException as error:
        logging.getLogger("sr3_agent").error("stopped by %s: %s", type(error).__name__, error)
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
