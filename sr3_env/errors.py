"""The exceptions `sr3_env` raises. Every message says what was wrong and how to fix it."""

from __future__ import annotations


class Sr3Error(Exception):
    """Base class of every error raised on purpose by `sr3_env`."""


class DataError(Sr3Error, ValueError):
    """A dataset file or object is malformed (the message names the file and the line)."""


class SplitNotFoundError(DataError):
    """The dataset has no qrels for the asked split (the message lists the splits it has)."""


class DatasetNotFoundError(Sr3Error, FileNotFoundError):
    """No bundled dataset, BEIR folder or Hugging Face dataset has this name or path."""


class UnknownIdError(Sr3Error, KeyError):
    """A query or document id that the dataset does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written
        return str(self.args[0]) if self.args else ""


class InvalidActionError(Sr3Error, ValueError):
    """An action that is not a finite, non-zero embedding of the expected shape."""


class EncoderError(Sr3Error, ValueError):
    """An encoder broke the `Encoder` protocol (wrong output shape, NaN, ...)."""


class InvalidOptionError(Sr3Error, ValueError):
    """A ``reset`` option the environment does not know, or one of the wrong type."""


class ResetNeeded(Sr3Error, RuntimeError):
    """`step` was called before `reset` or after the episode ended."""


class DependencyNotInstalled(Sr3Error, ImportError):
    """An optional dependency is missing; the message names the `pip install` command."""
