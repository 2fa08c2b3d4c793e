#!/usr/bin/env python3
"""Build the bundled ``python-docstrings`` retrieval dataset (BEIR layout).

A code-search task over the docstrings of the Python standard library of the
interpreter that runs this script (PSF License Agreement, Python Software
Foundation License Version 2):

* corpus  - one public stdlib function, class or method per document:
  title = ``qualified.name(signature)``, text = its docstring after the summary
  sentence (doctest blocks and reST directive lines dropped, whitespace
  normalised, at most 200 words with the title); id = ``doc-<qualified name>``;
* queries - the docstring's summary: the first paragraph on one line, cut at
  the end of its first sentence ("Serialize obj to a JSON formatted str.");
  id = ``q-<qualified name>``;
* qrels   - each query has exactly one relevant document: its own object's.

The modules are imported in a child interpreter (``-s -S``: the standard
library only, no site-packages; ``PYTHONHASHSEED=0``; one module's failing
import is recorded and skipped).  The queries are ordered by the sha1 of their
id; the first 20% (at most 1,000) form the ``test`` split, the next 10% the
``dev`` split, the rest ``train``.
Output files are gzip-compressed with ``mtime=0`` and written in sorted order,
and the README is generated with the counts and the Python version, so reruns
with the same Python are byte-identical.

Usage::

    python scripts/build_python_docstrings.py
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import inspect
import json
import os
import pkgutil
import platform
import re
import subprocess
import sys
import tempfile
import types
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sr3_env" / "datasets" / "python-docstrings"
NAME = "python-docstrings"

#: Top-level modules never imported: tests, GUI toolkits and demos, deprecated
#: tooling, modules with side effects on import (``this`` prints, ``antigravity``
#: opens a browser), C test modules, and the Windows twins of the POSIX modules
#: (``ntpath`` would repeat every ``os.path`` docstring).
SKIP_TOP = frozenset({
    "test", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip",
    "pydoc_data", "this", "antigravity", "xxsubtype", "xxlimited", "xxlimited_35",
    "nt", "ntpath", "nturl2path",
})
#: Modules walked under another name: the C module ``posix`` is what ``os``
#: re-exports, ``posixpath`` is ``os.path`` on POSIX; builtins go without a
#: prefix (``len``, ``dict.update``).
DISPLAY_NAME = {"posix": "os", "posixpath": "os.path", "builtins": ""}

MIN_QUERY_WORDS = 4
MAX_QUERY_WORDS = 40
MIN_BODY_WORDS = 15
LOOSE_BODY_WORDS = 8  # used when MIN_BODY_WORDS leaves fewer than LOOSEN_BELOW pairs
LOOSEN_BELOW = 1500
MAX_DOC_WORDS = 200
TEST_FRACTION = 0.2
MAX_TEST = 1000
DEV_FRACTION = 0.1  # of all pairs, taken after test in the same order (out of what was train)

ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "resp.", "approx.", "no.", "mr.", "dr.")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
SIGNATURE_LINE = re.compile(r"^[A-Za-z_][\w.]*\(.*\)(\s*-+>\s*.*)?$")
ROLE = re.compile(r":[\w:.-]+:`~?([^`]*)`")
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class BuildError(Exception):
    """Raised when the child interpreter fails or the output would be empty."""


# -- the walk (runs in the child interpreter) -----------------------------------------------------


def public(name: str) -> bool:
    """True for a name that does not start with ``_``."""
    return not name.startswith("_")


def stdlib_modules() -> list[str]:
    """Every public stdlib module name (top level and submodules), sorted.

    Packages are imported to list their submodules; one that fails to import is
    returned anyway, so its failure is recorded when it is walked.
    """
    names: set[str] = set()
    for top in sorted(sys.stdlib_module_names):
        if not public(top) or top in SKIP_TOP:
            continue
        names.add(top)
        try:
            package = importlib.import_module(top)
        except BaseException:  # noqa: BLE001 - recorded when walked
            continue
        for info in pkgutil.walk_packages(getattr(package, "__path__", []) or [], top + ".",
                                          onerror=lambda _name: None):
            if all(public(part) for part in info.name.split(".")):
                names.add(info.name)
    return sorted(names)


def own_doc(obj: object) -> str | None:
    """The object's own docstring, cleaned (``inspect.getdoc`` without inheritance)."""
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def machine_values() -> list[tuple[str, str]]:
    """Reprs of default values that depend on the machine, and the names that replace them."""
    values = [(repr(os.environ), "os.environ"), (repr(sys.executable), "sys.executable")]
    values += [(repr(getattr(sys, name)), f"sys.{name}")
               for name in ("prefix", "base_prefix", "exec_prefix", "base_exec_prefix")]
    return sorted(values, key=lambda pair: -len(pair[0]))


def signature_text(obj: object) -> str | None:
    """``str(inspect.signature(obj))`` without memory addresses or machine paths, or None."""
    try:
        text = ADDRESS.sub("", str(inspect.signature(obj)))
    except Exception:  # noqa: BLE001 - TypeError/ValueError mostly, but any failure means none
        return None
    for value, name in machine_values():
        text = text.replace(value, name)
    return text


def routine(raw: object) -> object | None:
    """The callable behind a class attribute when it is a method, else None."""
    if isinstance(raw, (classmethod, staticmethod)):
        raw = raw.__func__
    return raw if inspect.isroutine(raw) else None


def walk_module(module: types.ModuleType, modname: str, display: str, seen: set[int]) -> Iterator[dict]:
    """Yield ``{"name", "signature", "doc"}`` for the module's public objects.

    Functions and classes defined in the module (``__module__`` is the module,
    its C accelerator ``_<module>`` or one of its private submodules
    ``<module>._x``; the name is the object's own, not an alias),
    and the methods defined in those classes' own namespace.
    """
    prefix = f"{display}." if display else ""
    homes = {modname, "_" + modname.rsplit(".", 1)[-1]} | ({"posix"} if display == "os" else set())
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if not public(name) or id(obj) in seen:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        home = getattr(obj, "__module__", None)
        if not (home in homes or str(home).startswith(modname + "._")):
            continue
        if getattr(obj, "__qualname__", name) != name:
            continue
        seen.add(id(obj))
        yield {"name": f"{prefix}{name}", "signature": signature_text(obj), "doc": own_doc(obj)}
        if not inspect.isclass(obj):
            continue
        for attr in sorted(vars(obj)):
            method = routine(vars(obj)[attr])
            if not public(attr) or method is None or id(method) in seen:
                continue
            seen.add(id(method))
            yield {"name": f"{prefix}{name}.{attr}", "signature": signature_text(method),
                   "doc": own_doc(method)}


def walk(out_file: Path) -> None:
    """Import every public stdlib module and dump its objects' docstrings as JSON."""
    script_dir = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p not in ("", script_dir)]
    warnings.simplefilter("ignore")
    objects: list[dict] = []
    failed: dict[str, str] = {}
    seen: set[int] = set()
    modules = stdlib_modules()
    for modname in modules:
        try:
            module = importlib.import_module(modname)
        except BaseException as exc:  # noqa: BLE001 - ImportError, but also SystemExit etc.
            failed[modname] = type(exc).__name__
            continue
        objects.extend(walk_module(module, modname, DISPLAY_NAME.get(modname, modname), seen))
    result = {"modules": modules, "failed": failed, "objects": objects}
    out_file.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


def run_walk() -> dict:
    """Run `walk` in a clean child interpreter and return its result."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0",
           "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC", "HOME": "/nonexistent"}
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "walk.json"
        done = subprocess.run(
            [sys.executable, "-s", "-S", "-B", str(Path(__file__).resolve()), "--walk-into", str(out_file)],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
        )
        if done.returncode != 0 or not out_file.is_file():
            raise BuildError(f"the stdlib walk failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return json.loads(out_file.read_text(encoding="utf-8"))


# -- turning docstrings into pairs ----------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One object's query (its summary) and document (signature + rest of the docstring)."""

    name: str  # qualified name, e.g. ``json.dumps``
    query: str
    title: str
    body: str

    @property
    def doc_id(self) -> str:
        """Corpus id, e.g. ``doc-json.dumps``."""
        return f"doc-{self.name}"

    @property
    def query_id(self) -> str:
        """Query id, e.g. ``q-json.dumps``."""
        return f"q-{self.name}"


def normalise_ws(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def strip_roles(text: str) -> str:
    """Replace reST roles by their content: ``:func:`~os.stat``` -> ``os.stat``."""
    return ROLE.sub(r"\1", text)


def paragraphs(doc: str) -> list[list[str]]:
    """Split a cleaned docstring into paragraphs (lists of lines) at blank lines."""
    result: list[list[str]] = [[]]
    for line in doc.splitlines():
        if line.strip():
            result[-1].append(line)
        elif result[-1]:
            result.append([])
    return [p for p in result if p]


def split_signature_lines(paras: list[list[str]]) -> tuple[str | None, list[list[str]]]:
    """Remove the ``name(args) -> result`` lines that open many C docstrings.

    Returns the first such line's argument part (``(args) -> result``) and the
    paragraphs without those lines.
    """
    found = None
    while paras and paras[0] and SIGNATURE_LINE.match(paras[0][0].strip()):
        line = paras[0][0].strip()
        found = found or line[line.index("("):]
        paras = [paras[0][1:], *paras[1:]] if paras[0][1:] else paras[1:]
    return found, paras


def first_sentence_end(text: str) -> int:
    """Index just past the first sentence of ``text`` (``len(text)`` if none ends)."""
    for match in SENTENCE_END.finditer(text):
        words = text[: match.end()].rsplit(" ", 1)
        if words[-1].lower() in ABBREVIATIONS:
            continue
        return match.end()
    return len(text)


def drop_code(lines: Iterable[str]) -> list[str]:
    """Drop doctest blocks (``>>>`` to the next blank line) and reST directive lines."""
    kept: list[str] = []
    in_doctest = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        if in_doctest or stripped.startswith(".. "):
            continue
        kept.append(line)
    return kept


def make_pair(record: dict, min_body_words: int) -> tuple[Pair | None, str]:
    """Turn one walked object into a pair, or None with the reason it was dropped."""
    if not record["doc"]:
        return None, "no docstring"
    sig_line, paras = split_signature_lines(paragraphs(record["doc"]))
    if not paras:
        return None, "docstring is only a signature"
    first = strip_roles(normalise_ws(" ".join(paras[0])))
    end = first_sentence_end(first)
    query = first[:end].strip()
    if not MIN_QUERY_WORDS <= len(query.split()) <= MAX_QUERY_WORDS:
        return None, f"summary not {MIN_QUERY_WORDS}..{MAX_QUERY_WORDS} words"
    rest = [first[end:]] + [line for para in paras[1:] for line in [*para, ""]]
    body_words = strip_roles(normalise_ws(" ".join(drop_code(rest)))).split()
    if len(body_words) < min_body_words:
        return None, f"body under {min_body_words} words"
    signature = record["signature"] or sig_line or ""
    title = normalise_ws(f"{record['name']}{signature}")
    budget = max(0, MAX_DOC_WORDS - len(title.split()))
    return Pair(name=record["name"], query=query, title=title, body=" ".join(body_words[:budget])), ""


def build_pairs(objects: list[dict], min_body_words: int) -> tuple[list[Pair], Counter]:
    """Every usable pair, with ambiguous summaries and self-quoting documents dropped."""
    dropped: Counter = Counter()
    pairs: list[Pair] = []
    names = Counter(record["name"] for record in objects)
    for record in objects:
        if names[record["name"]] > 1:
            dropped["qualified name shared by two objects"] += 1
            continue
        pair, reason = make_pair(record, min_body_words)
        if pair is None:
            dropped[reason] += 1
        else:
            pairs.append(pair)
    summaries = Counter(pair.query.casefold() for pair in pairs)
    kept = []
    for pair in pairs:
        if summaries[pair.query.casefold()] > 1:
            dropped["summary shared by several objects"] += 1
        elif normalise_ws(pair.query).casefold() in f"{pair.title}\n{pair.body}".casefold():
            dropped["summary appears verbatim in the document"] += 1
        else:
            kept.append(pair)
    return sorted(kept, key=lambda p: p.name), dropped


def split_pairs(pairs: list[Pair]) -> dict[str, list[Pair]]:
    """Split the pairs in sha1-of-query-id order: ``test``, then ``dev``, then ``train``.

    The first 20% (at most 1,000) are ``test``, the next 10% (``round(0.1 * n)``)
    ``dev``, the rest ``train``; ``dev`` is carved out of what used to be all
    ``train``, so ``test`` is the same as before ``dev`` was added.
    """
    order = sorted(pairs, key=lambda p: hashlib.sha1(p.query_id.encode("utf-8")).hexdigest())
    n_test = min(MAX_TEST, round(TEST_FRACTION * len(order)))
    n_dev = min(len(order) - n_test, round(DEV_FRACTION * len(order)))
    return {"train": sorted(order[n_test + n_dev:], key=lambda p: p.name),
            "test": sorted(order[:n_test], key=lambda p: p.name),
            "dev": sorted(order[n_test:n_test + n_dev], key=lambda p: p.name)}


# -- output ---------------------------------------------------------------------------------------


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


def write_dataset(pairs: list[Pair], splits: dict[str, list[Pair]], out: Path) -> None:
    """Write corpus, queries (of all splits) and per-split qrels under ``out``."""
    by_doc = sorted(pairs, key=lambda p: p.doc_id)
    write_gzip_lines(out / "corpus.jsonl.gz",
                     jsonl({"_id": p.doc_id, "title": p.title, "text": p.body} for p in by_doc))
    by_query = sorted(pairs, key=lambda p: p.query_id)
    write_gzip_lines(out / "queries.jsonl.gz", jsonl({"_id": p.query_id, "text": p.query} for p in by_query))
    for split, members in splits.items():
        rows = (f"{p.query_id}\t{p.doc_id}\t1" for p in sorted(members, key=lambda p: p.query_id))
        write_gzip_lines(out / "qrels" / f"{split}.tsv.gz", ["query-id\tcorpus-id\tscore", *rows])


def summary_lines(walked: dict, pairs: list[Pair], splits: dict[str, list[Pair]], dropped: Counter,
                  min_body_words: int) -> list[str]:
    """Human-readable counts of the built dataset (printed, and copied into the README)."""
    lines = [
        f"python: {platform.python_implementation()} {platform.python_version()} ({sys.platform})",
        f"modules walked: {len(walked['modules']) - len(walked['failed'])} "
        f"(failed to import, skipped: {len(walked['failed'])})",
        f"public functions, classes and methods: {len(walked['objects'])}",
        f"minimum body words: {min_body_words}",
    ]
    lines += [f"dropped, {reason}: {n}" for reason, n in sorted(dropped.items())]
    lines.append(f"documents: {len(pairs)}")
    for split in ("train", "test", "dev"):
        lines += [f"queries ({split}): {len(splits[split])}", f"qrels ({split}): {len(splits[split])}"]
    return lines


def example_lines(splits: dict[str, list[Pair]], count: int = 3) -> list[str]:
    """A few test pairs, for the README."""
    lines = []
    for pair in splits["test"][:: max(1, len(splits["test"]) // count)][:count]:
        words = f"{pair.title} {pair.body}".split()
        lines += [f"- query `{pair.query_id}`: {pair.query}",
                  f"  - document `{pair.doc_id}`: {' '.join(words[:30])} ..."]
    return lines


README = """\
# python-docstrings

A code-search retrieval dataset: **given the one-sentence summary of a Python
standard-library docstring, retrieve the function, class or method it
describes**, shown as its signature and the rest of its docstring. Each query
has exactly one relevant document. Example: the query "{example_query}"
has the relevant document `{example_doc}`. It is another kind of text than the
WordNet glosses of `wordnet-revdict`, for training on a mixture.

## Source

The docstrings of the standard library of **{python}** (`sys.platform`
`{platform}`), read by importing every public module in a child interpreter
started with `-s -S` (standard library only, no site-packages).

## Licence

The docstrings are part of the CPython source and are distributed under the
**PSF License Agreement** (Python Software Foundation License Version 2,
<https://docs.python.org/3/license.html>; also `license()` in the interpreter),
which allows redistribution of derivative works provided the PSF copyright
notice is retained. That notice, as given by the interpreter's
`sys.copyright`:

```
{copyright}
```

Changes made to the original text: docstrings are split into a summary
sentence (the query) and the rest (the document), whitespace-normalised, reST
roles unwrapped, doctest blocks and reST directive lines removed, and cut to
{max_doc_words} words, as described below.

## Layout (BEIR)

- `corpus.jsonl.gz` — `{{"_id", "title", "text"}}`: `_id` is `doc-` + the
  qualified name (e.g. `doc-json.dumps`), `title` the qualified name with its
  signature (`inspect.signature`, else the `name(args)` line that opens many C
  docstrings, else the bare name), `text` the docstring after the summary.
- `queries.jsonl.gz` — `{{"_id", "text"}}`: `_id` is `q-` + the qualified name,
  `text` the docstring's summary sentence. Queries of all three splits.
- `qrels/train.tsv.gz`, `qrels/test.tsv.gz`, `qrels/dev.tsv.gz` —
  `query-id<TAB>corpus-id<TAB>score`,
  one row per query, score 1, the query's own object.

Files are gzip'd with `mtime=0` and sorted by id, so rebuilding with the same
Python version is byte-identical (this README is generated by the script too).

## How it was built

```sh
python scripts/build_python_docstrings.py
```

Output of the script:

```
{summary}
```

### Queries and documents

- Objects: in every public stdlib module (names with no part starting with `_`;
  packages walked for their submodules), the public functions and classes
  defined there (`__module__` is the module, its C accelerator `_<module>` or
  one of its private submodules `<module>._x`, and the object's `__qualname__`
  is the name it is found under, so aliases and re-exports are not repeated),
  and the public methods (functions, class and static methods, C method
  descriptors) in those classes' own namespace (not inherited). `posix` is
  named `os`, `posixpath` `os.path`, and builtins have no prefix (`len`,
  `dict.update`). Only an object's own docstring is used (no inheritance from
  a base class).
- Query: the docstring's first paragraph (after any opening `name(args)`
  signature lines) on one line, cut at the end of its first sentence (`.`, `!`
  or `?` followed by a space, not after "e.g." and similar), reST roles such as
  ``:func:`x` `` unwrapped; kept when {min_q}..{max_q} words.
- Document: title `qualified.name(signature)` (memory addresses removed from
  default values, and defaults that are machine-dependent written by name:
  `os.environ`, `sys.executable`, `sys.prefix`...); text = the rest of the first paragraph and every later
  paragraph, doctest blocks (from a `>>>` line to the next blank line) and reST
  directive lines (`.. versionadded::` ...) dropped, whitespace normalised; kept
  when that text has at least {min_body} words{loosened}; cut so that title and
  text together have at most {max_doc_words} words. (The rule is loosened to
  {loose} words only when {min_body_strict} words leave fewer than
  {loosen_below} pairs.)

### Filtered

- Modules not imported: `test`, `idlelib`, `tkinter`, `turtle`, `turtledemo`,
  `lib2to3`, `ensurepip`, `pydoc_data`, `this` and `antigravity` (side effects
  on import), the C test modules `xxsubtype`/`xxlimited*`, the Windows twins
  `nt`, `ntpath`, `nturl2path`, and private modules. Modules whose import
  failed here, skipped ({n_failed}):
  {failed}.
- Pairs dropped: the counts in the output above. A summary shared (case
  folded) by several objects ("Return self==value.", "Close the file.") is
  dropped for all of them, so no two queries have the same text and no query
  of one split equals a query of another; a query whose text appears verbatim
  in its own document is dropped.

### Split

The queries are ordered by the sha1 of their id; the first 20% (at most
{max_test:,}) are `test`, the next 10% `dev`, the rest `train` (pairwise
disjoint; `dev` was carved out of the former `train` split, so `test` did not
change). One corpus serves all three splits.

## Counts

| | |
|---|---|
| documents | {n_docs:,} |
| queries (train) | {n_train:,} |
| queries (test) | {n_test:,} |
| queries (dev) | {n_dev:,} |
| qrels | one per query, score 1 |
| modules imported | {n_modules:,} ({n_failed} failed to import, skipped) |

## Examples (test)

{examples}

## Caveats

- The set of modules, and so the counts, depends on the Python version and on
  how the interpreter was built (optional C modules such as `_tkinter`,
  `_sqlite3`, `_dbm`, `_curses`); rebuild with {python} to reproduce the files.
- Summaries are written for readers of the code: many are terse ("Return the
  number of items.") and the document often repeats the object's name.
"""


def readme(walked: dict, pairs: list[Pair], splits: dict[str, list[Pair]], dropped: Counter,
           min_body_words: int) -> str:
    """The dataset's README, with the counts and the Python version of this build."""
    failed = ", ".join(f"`{m}` ({e})" for m, e in sorted(walked["failed"].items())) or "none"
    return README.format(
        example_query=splits["test"][0].query if splits["test"] else "",
        example_doc=splits["test"][0].title if splits["test"] else "",
        loose=LOOSE_BODY_WORDS, min_body_strict=MIN_BODY_WORDS, loosen_below=f"{LOOSEN_BELOW:,}",
        n_modules=len(walked["modules"]) - len(walked["failed"]),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=sys.platform, copyright=sys.copyright.strip(), max_doc_words=MAX_DOC_WORDS,
        summary="\n".join(summary_lines(walked, pairs, splits, dropped, min_body_words)),
        min_q=MIN_QUERY_WORDS, max_q=MAX_QUERY_WORDS, min_body=min_body_words,
        loosened=(f" (loosened from {MIN_BODY_WORDS}: that rule left fewer than {LOOSEN_BELOW} pairs)"
                  if min_body_words != MIN_BODY_WORDS else ""),
        n_failed=len(walked["failed"]), failed=failed, max_test=MAX_TEST, n_docs=len(pairs),
        n_train=len(splits["train"]), n_test=len(splits["test"]), n_dev=len(splits["dev"]),
        examples="\n".join(example_lines(splits)),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument("--walk-into", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the dataset and print its counts."""
    args = parse_args(argv)
    if args.walk_into is not None:  # the child interpreter
        walk(args.walk_into)
        return 0
    try:
        walked = run_walk()
        min_body_words = MIN_BODY_WORDS
        pairs, dropped = build_pairs(walked["objects"], min_body_words)
        if len(pairs) < LOOSEN_BELOW:
            min_body_words = LOOSE_BODY_WORDS
            pairs, dropped = build_pairs(walked["objects"], min_body_words)
        if not pairs:
            raise BuildError("no pair survived the filters")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    splits = split_pairs(pairs)
    write_dataset(pairs, splits, args.out)
    (args.out / "README.md").write_text(readme(walked, pairs, splits, dropped, min_body_words), encoding="utf-8")
    print("\n".join(summary_lines(walked, pairs, splits, dropped, min_body_words)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
