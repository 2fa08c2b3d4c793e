"""The bundled ``python-docstrings`` dataset: its counts match its README, its ids and qrels hold
together, its splits share no query text, and rebuilding it with the script gives the same bytes."""

from __future__ import annotations

import gzip
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sr3_env import load_dataset

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "sr3_env" / "datasets" / "python-docstrings"
SCRIPT = ROOT / "scripts" / "build_python_docstrings.py"
FILES = ("corpus.jsonl.gz", "queries.jsonl.gz", "qrels/train.tsv.gz", "qrels/test.tsv.gz", "qrels/dev.tsv.gz",
         "README.md")


def readme() -> str:
    return (FOLDER / "README.md").read_text(encoding="utf-8")


def readme_count(label: str) -> int:
    match = re.search(rf"^\| {re.escape(label)} \| ([\d,]+) \|$", readme(), re.MULTILINE)
    assert match, f"no '{label}' row in the README's counts"
    return int(match.group(1).replace(",", ""))


def recorded_python() -> str:
    match = re.search(r"^python: (\S+ \S+) \(", readme(), re.MULTILINE)
    assert match, "the README does not record the Python version"
    return match.group(1)


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_counts_ids_and_qrels_match_the_readme():
    train = load_dataset("python-docstrings", "train")
    test = load_dataset("python-docstrings", "test")
    dev = load_dataset("python-docstrings", "dev")
    assert len(train.doc_ids) == readme_count("documents")
    assert len(train.query_ids) == readme_count("queries (train)")
    assert len(test.query_ids) == readme_count("queries (test)")
    assert len(dev.query_ids) == readme_count("queries (dev)")
    assert train.doc_ids == test.doc_ids == dev.doc_ids  # one corpus, three query splits
    for ds in (train, test, dev):
        assert len(set(ds.doc_ids)) == len(ds.doc_ids) and len(set(ds.query_ids)) == len(ds.query_ids)
        for query_id in ds.query_ids:
            assert ds.qrels[query_id] == {f"doc-{query_id.removeprefix('q-')}": 1}
            assert all(doc_id in ds.doc_row for doc_id in ds.qrels[query_id])
    assert not set(train.query_ids) & set(test.query_ids)
    assert not set(dev.query_ids) & (set(train.query_ids) | set(test.query_ids))
    # every written query and document belongs to exactly one split's pair
    queries = read_jsonl(FOLDER / "queries.jsonl.gz")
    assert sorted(q["_id"] for q in queries) == sorted(train.query_ids + test.query_ids + dev.query_ids)
    assert len(train.doc_ids) == len(queries)


def test_no_shared_query_text_and_no_query_inside_its_document():
    train = load_dataset("python-docstrings", "train")
    test = load_dataset("python-docstrings", "test")
    dev = load_dataset("python-docstrings", "dev")
    texts = [{t.casefold() for t in ds.query_texts} for ds in (train, test, dev)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for ds in (train, test, dev):
        for query_id, text in zip(ds.query_ids, ds.query_texts):
            assert 4 <= len(text.split()) <= 40
            (doc_id,) = ds.qrels[query_id]
            row = ds.doc_row[doc_id]
            assert text not in f"{ds.titles[row]}\n{ds.texts[row]}"
            assert len(f"{ds.titles[row]} {ds.texts[row]}".split()) <= 200


def test_the_readme_records_the_licence_and_the_python_version():
    text = readme()
    assert "PSF License Agreement" in text and "Python Software Foundation" in text
    assert "Copyright (c) 2001-" in text
    assert recorded_python().startswith("CPython 3.")


def test_rebuilding_gives_the_same_bytes(tmp_path):
    running = f"{platform.python_implementation()} {platform.python_version()}"
    if running != recorded_python():
        pytest.skip(f"the dataset was built with {recorded_python()}, this is {running}")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), name
