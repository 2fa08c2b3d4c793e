"""The exceptions `sr3_env` raises (every message says what was wrong and how to fix it), and `require`,
which raises the one for a missing optional dependency."""

from __future__ import annotations

import importlib.util
import sys


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


def require(extra: str, what: str, *modules: str, hint: str = "") -> None:
    """Raise `DependencyNotInstalled` naming ``pip install "sr3[<extra>]"`` when any of ``modules`` (import
    names) is not installed; call it just before the imports of an optional dependency.

    Only looks the modules up (`importlib.util.find_spec`), so it costs nothing when they are there; a module
    that is installed but fails to import still raises its own, more precise, error at the import.
    ``hint`` is appended to the message (another way out, such as a dependency-free option).
    """
    missing = [module for module in modules if not _installed(module)]
    if missing:
        names = ", ".join(missing)
        raise DependencyNotInstalled(f"{what} needs {names}, which {'is' if len(missing) == 1 else 'are'} not "
                                     f'installed: `pip install "sr3[{extra}]"`.' + (f" {hint}" if hint else ""))


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported already (or blocked: None), perhaps without a spec
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None
