"""Config files for the ``sr3`` commands: ``sr3 COMMAND --config FILE`` reads a TOML file of the
command's options, and options given on the command line override it.

A file holds one flat table whose keys are the command's option names (``lora_rank`` or
``lora-rank``; a renamed option's old name too, with a warning); ``"none"`` stands for an unset
optional value (TOML has no null). The recipes shipped here are named without their folder or ``.toml``: ``sr3 train --config qwen2.5-1.5b``.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any

from sr3_agent.config import ConfigError, current_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RECIPES = Path(__file__).parent


def bundled_recipes() -> list[str]:
    """Names of the recipes shipped with sr3."""
    return sorted(path.stem for path in RECIPES.glob("*.toml"))


def recipe_path(name_or_path: str) -> Path:
    """A bundled recipe's file, or ``name_or_path`` itself when it is a file."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    bundled = RECIPES / f"{name_or_path}.toml"
    if bundled.is_file():
        return bundled
    raise ConfigError(f"No config file {name_or_path!r}: pass a TOML file's path or one of the bundled recipes "
                      f"{bundled_recipes()}.")


def read_config_file(name_or_path: str, cls: type) -> dict[str, Any]:
    """The options of ``cls`` (a command's config dataclass) set by a TOML file, checked and converted
    to the types the command line gives (``ConfigError`` naming the key and the fix otherwise)."""
    path = recipe_path(name_or_path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not a valid TOML file: {error}.") from None
    hints = typing.get_type_hints(cls)
    names = [item.name for item in dataclasses.fields(cls)]
    values = {}
    for key, value in table.items():
        ((name, value),) = current_names(cls, {key.replace("-", "_"): value}, str(path)).items()  # an old name, renamed
        if name not in hints:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: {key!r} is not an option of this command.{hint} Its options: {', '.join(names)}.")
        values[name] = _converted(value, hints[name], f"{path}: {key}")
    return values


def _converted(value: Any, hint: Any, where: str) -> Any:
    """``value`` as a field of type ``hint`` takes it (bool, int, float, str, list of those, one of those or a
    list of them, or optional)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if isinstance(value, str) and value.lower() == "none":
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # one value or a list (str | list[str])
        lists = [a for a in args if typing.get_origin(a) is list]
        singles = [a for a in args if typing.get_origin(a) is not list]
        return _converted(value, (lists if isinstance(value, list) and lists else singles)[0], where)
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        return [_converted(item, args[0], where) for item in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {getattr(hint, '__name__', hint)}, got {value!r} ({type(value).__name__}).")
    return value
