#!/usr/bin/env python3
"""Build the bundled ``wordnet-revdict`` retrieval dataset (BEIR layout).

A reverse-dictionary task over English WordNet 3.0 nouns (Princeton WordNet,
as packaged by Debian's ``wordnet-base``; file ``data.noun``):

* corpus  - every noun synset; text = its lemma names ("lion, king of beasts,
  Panthera leo"), title empty; id = "n" + 8-digit synset offset;
* queries - a synset's gloss with the quoted usage examples removed
  ("large gregarious predatory feline of Africa and India ..."); id = "q" + doc id;
* qrels   - each query has exactly one relevant document: its own synset.

The synsets with a non-empty cleaned gloss are shuffled with
``numpy.random.default_rng(seed)``; the first ``--test-size`` form the ``test``
split, the next ``--train-size`` the ``train`` split and the next
``--dev-size`` the ``dev`` split (so adding ``dev`` left test and train
unchanged).  Only the queries of those three splits are written.  Output files are gzip-compressed with
``mtime=0`` and written in sorted order, so reruns are byte-identical.

Usage::

    python scripts/build_wordnet_revdict.py --wordnet-dir /usr/share/wordnet
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sr3_env" / "datasets" / "wordnet-revdict"
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
EXAMPLE_SEPARATORS = ";:,"  # punctuation that introduces a quoted usage example
TRAILING_JUNK = " \t;:,"


class BuildError(Exception):
    """Raised when the source data is missing or malformed, or arguments are invalid."""


@dataclass(frozen=True)
class Synset:
    """One noun synset parsed from ``data.noun``."""

    offset: str  # 8-digit byte offset, the synset's id in WordNet 3.0
    lemmas: tuple[str, ...]  # lemma names as written in the file (underscores kept)
    gloss: str  # raw gloss: definition plus any quoted examples

    @property
    def doc_id(self) -> str:
        """Corpus id, e.g. ``n02129165``."""
        return f"n{self.offset}"

    @property
    def query_id(self) -> str:
        """Query id, e.g. ``qn02129165``."""
        return f"q{self.doc_id}"


def parse_data_line(line: str, line_no: int) -> Synset:
    """Parse one synset line of a WordNet ``data.*`` file.

    Layout: ``synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...]
    p_cnt [ptr...] | gloss`` with ``w_cnt`` two hexadecimal digits.
    """
    data, bar, gloss = line.partition(" | ")
    fields = data.split()
    if not bar or len(fields) < 6:
        raise BuildError(f"line {line_no}: not a synset line: {line[:80]!r}")
    offset, _lex_filenum, ss_type, w_cnt_hex = fields[:4]
    if len(offset) != 8 or not offset.isdigit():
        raise BuildError(f"line {line_no}: bad synset offset {offset!r}")
    if ss_type != "n":
        raise BuildError(f"line {line_no}: expected a noun synset, got type {ss_type!r}")
    try:
        w_cnt = int(w_cnt_hex, 16)
    except ValueError:
        raise BuildError(f"line {line_no}: bad word count {w_cnt_hex!r}") from None
    words = fields[4 : 4 + 2 * w_cnt : 2]
    if w_cnt == 0 or len(words) != w_cnt or len(fields) < 5 + 2 * w_cnt:
        raise BuildError(f"line {line_no}: word count {w_cnt} does not match the line")
    return Synset(offset=offset, lemmas=tuple(words), gloss=gloss.strip())


def read_synsets(path: Path) -> Iterator[Synset]:
    """Yield the synsets of a WordNet data file, skipping the licence header."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.startswith("  ") or not line.strip():
                continue  # licence header lines start with two spaces
            yield parse_data_line(line.rstrip("\n"), line_no)


def index_synsets(synsets: Iterable[Synset]) -> dict[str, Synset]:
    """Map doc id -> synset, refusing duplicate offsets."""
    index: dict[str, Synset] = {}
    for synset in synsets:
        if index.setdefault(synset.doc_id, synset) is not synset:
            raise BuildError(f"duplicate synset offset {synset.offset}")
    return index


def lemma_text(lemmas: Iterable[str]) -> str:
    """Join lemma names for display: ``lion, king of beasts, Panthera leo``."""
    return ", ".join(lemma.replace("_", " ") for lemma in lemmas)


def definition_end(gloss: str) -> int:
    """Index where the quoted usage examples of a gloss begin (``len`` if none).

    Examples are double-quoted and introduced by ``;`` (rarely ``:`` or ``,``).
    Quotes inside parentheses or not preceded by such punctuation are part of
    the definition (``especially in the phrase "make strides"``) and are kept.
    """
    depth = 0
    in_quote = False
    for i, char in enumerate(gloss):
        if char == '"':
            before = gloss[:i].rstrip()
            if not in_quote and depth == 0 and before[-1:] in EXAMPLE_SEPARATORS:
                return len(before) - 1
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth = max(0, depth - 1)
    return len(gloss)


def clean_gloss(gloss: str) -> str:
    """Return the gloss's definition without quoted examples or trailing ``;``."""
    definition = gloss[: definition_end(gloss)].rstrip(TRAILING_JUNK)
    if definition.count('"') % 2 == 1 and definition.endswith('"'):
        definition = definition[:-1].rstrip(TRAILING_JUNK)  # stray closing quote
    return " ".join(definition.split())


def split_ids(
    candidates: list[str], seed: int, test_size: int, train_size: int, dev_size: int = 0
) -> dict[str, list[str]]:
    """Shuffle ``candidates`` with ``default_rng(seed)`` and cut test, then train, then dev.

    ``dev`` comes after ``train`` in the shuffled order, so its size does not
    change which synsets are in ``test`` or ``train``.  The ``dev`` key is only
    present when ``dev_size`` > 0.
    """
    if test_size < 1 or train_size < 0 or dev_size < 0:
        raise BuildError("--test-size must be >= 1, --train-size and --dev-size >= 0")
    total = test_size + train_size + dev_size
    if total > len(candidates):
        raise BuildError(
            f"--test-size + --train-size + --dev-size = {total} exceeds the "
            f"{len(candidates)} synsets with a usable gloss"
        )
    order = np.random.default_rng(seed).permutation(len(candidates))
    picked = [candidates[i] for i in order[:total]]
    splits = {
        "test": sorted(picked[:test_size]),
        "train": sorted(picked[test_size : test_size + train_size]),
    }
    if dev_size:
        splits["dev"] = sorted(picked[test_size + train_size :])
    return splits


def write_gzip_lines(path: Path, lines: Iterable[str]) -> None:
    """Write text lines to a deterministic gzip file (mtime=0, no file name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
    ) as gz:
        for line in lines:
            gz.write(line.encode("utf-8") + b"\n")


def jsonl(records: Iterable[dict]) -> Iterable[str]:
    """Serialise records as UTF-8 JSON lines."""
    return (json.dumps(record, ensure_ascii=False) for record in records)


def write_dataset(
    synsets: dict[str, Synset], queries: dict[str, str], splits: dict[str, list[str]], out: Path
) -> None:
    """Write corpus, queries (of all splits) and per-split qrels under ``out``.

    ``synsets`` maps doc id -> synset, ``queries`` doc id -> cleaned gloss and
    ``splits`` split name -> sorted doc ids.
    """
    write_gzip_lines(
        out / "corpus.jsonl.gz",
        jsonl(
            {"_id": doc_id, "title": "", "text": lemma_text(synsets[doc_id].lemmas)}
            for doc_id in sorted(synsets)
        ),
    )
    in_splits = sorted(doc_id for ids in splits.values() for doc_id in ids)
    write_gzip_lines(
        out / "queries.jsonl.gz",
        jsonl({"_id": synsets[d].query_id, "text": queries[d]} for d in in_splits),
    )
    for split, doc_ids in splits.items():
        rows = (f"{synsets[d].query_id}\t{d}\t1" for d in doc_ids)
        write_gzip_lines(out / "qrels" / f"{split}.tsv.gz", ["query-id\tcorpus-id\tscore", *rows])


def summary(n_docs: int, n_eligible: int, splits: dict[str, list[str]]) -> str:
    """Human-readable counts of the built dataset."""
    lines = [
        f"documents: {n_docs}",
        f"synsets with a non-empty cleaned gloss: {n_eligible} "
        f"(skipped: {n_docs - n_eligible})",
        f"queries written: {sum(len(ids) for ids in splits.values())}",
    ]
    for split, ids in splits.items():
        lines += [
            f"queries ({split}): {len(ids)}",
            f"qrels ({split}): {len(ids)}",
            f"mean relevant per query ({split}): {1.0 if ids else 0.0:.3f}",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wordnet-dir",
        type=Path,
        default=DEFAULT_WORDNET_DIR,
        help=f"directory holding WordNet 3.0's data.noun (default: {DEFAULT_WORDNET_DIR})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: 0)")
    parser.add_argument(
        "--test-size", type=int, default=1000, help="queries in the test split (default: 1000)"
    )
    parser.add_argument(
        "--train-size", type=int, default=20000, help="queries in the train split (default: 20000)"
    )
    parser.add_argument(
        "--dev-size",
        type=int,
        default=500,
        help="queries in the dev split, drawn after train (default: 500; 0 writes no dev split)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the dataset and print its counts."""
    args = parse_args(argv)
    data_file = args.wordnet_dir / "data.noun"
    try:
        if not data_file.is_file():
            raise BuildError(
                f"{data_file} not found; install WordNet 3.0 with "
                "`apt-get install wordnet-base` or pass --wordnet-dir"
            )
        synsets = index_synsets(read_synsets(data_file))
        queries = {d: clean_gloss(s.gloss) for d, s in synsets.items()}
        eligible = sorted(d for d, text in queries.items() if text)
        splits = split_ids(
            eligible, args.seed, args.test_size, args.train_size, args.dev_size
        )
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_dataset(synsets, queries, splits, args.out)
    print(summary(len(synsets), len(eligible), splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
