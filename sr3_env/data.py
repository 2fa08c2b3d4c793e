"""Retrieval data in BEIR layout: bundled datasets, BEIR folders and Hugging Face datasets (objects, saved
folders, or ``owner/name`` ids on the Hugging Face hub).

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, with a header line);
any of them may be gzip-compressed (``.gz``). `load_dataset` reads one and checks it, naming the
file and line of anything malformed.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from sr3_env.errors import DataError, DatasetNotFoundError, SplitNotFoundError, UnknownIdError, require

logger = logging.getLogger(__name__)

BUNDLED_DATASETS = ("semanlink", "wordnet-revdict", "python-docstrings")
"""Datasets shipped inside the package, loaded by name (see ``sr3_env/datasets/README.md``)."""


@dataclass(eq=False)
class RetrievalDataset:
    """A corpus, the queries of one split, and their graded relevance judgements.

    Only queries with at least one relevant document (qrels score > 0) are kept. Documents are
    addressed by id (``doc_ids[i]``) or by row (``i``), the row being the index row too.
    """

    name: str
    split: str
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    doc_row: dict[str, int] = field(init=False, repr=False)
    query_row: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.doc_row = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
        self.query_row = {query_id: i for i, query_id in enumerate(self.query_ids)}

    def __repr__(self) -> str:
        return (f"RetrievalDataset(name={self.name!r}, split={self.split!r}, "
                f"documents={len(self.doc_ids)}, queries={len(self.query_ids)})")

    @property
    def documents(self) -> list[str]:
        """The text an encoder sees for each document: ``title`` then ``text`` (one line each)."""
        return [f"{title}\n{text}" if title else text for title, text in zip(self.titles, self.texts)]

    def query_text(self, query_id: str) -> str:
        return self.query_texts[self._query(query_id)]

    def relevant(self, query_id: str) -> dict[str, int]:
        """The relevant documents of a query: ``{doc_id: graded relevance > 0}``."""
        self._query(query_id)
        return self.qrels[query_id]

    def relevant_rows(self, query_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows and relevance grades of a query's relevant documents, as int64 arrays."""
        judged = self.relevant(query_id)
        rows = np.fromiter((self.doc_row[d] for d in judged), dtype=np.int64, count=len(judged))
        grades = np.fromiter(judged.values(), dtype=np.int64, count=len(judged))
        return rows, grades

    def _query(self, query_id: str) -> int:
        try:
            return self.query_row[query_id]
        except (KeyError, TypeError):  # TypeError: an unhashable id (a list, a dict...)
            close = difflib.get_close_matches(str(query_id), self.query_ids, n=3)
            hint = f" Did you mean one of {close}?" if close else ""
            raise UnknownIdError(f"Query id {query_id!r} is not in the {self.split!r} split of {self.name!r}.{hint}") from None

    def doc_rows(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Rows of the given document ids; an unknown id raises `UnknownIdError`."""
        rows = []
        for doc_id in doc_ids:
            if doc_id not in self.doc_row:
                close = difflib.get_close_matches(str(doc_id), self.doc_ids, n=3)
                hint = f" Did you mean one of {close}?" if close else ""
                raise UnknownIdError(f"Document id {doc_id!r} is not in the corpus of {self.name!r}.{hint}")
            rows.append(self.doc_row[doc_id])
        return np.asarray(rows, dtype=np.int64)

    def fingerprint(self) -> str:
        """A short hash of the corpus (ids and texts), used to key cached embeddings."""
        digest = hashlib.sha256()
        for doc_id, text in zip(self.doc_ids, self.documents):
            digest.update(doc_id.encode())
            digest.update(b"\0")
            digest.update(text.encode())
            digest.update(b"\1")
        return digest.hexdigest()[:16]

    def subset(self, *, query_ids: Sequence[str] | None = None, num_queries: int | None = None,
               num_docs: int | None = None, seed: int = 0) -> RetrievalDataset:
        """A smaller dataset that keeps every relevant document of the queries it keeps.

        Args:
            query_ids: the queries to keep (default: all, or ``num_queries`` drawn at random).
            num_queries: how many queries to draw (with ``seed``) when ``query_ids`` is not given.
            num_docs: corpus size to aim for: all relevant documents of the kept queries plus
                random others up to this number (never fewer than the relevant ones).
            seed: seed of the random draws.
        """
        rng = np.random.default_rng(seed)
        if query_ids is None:
            query_ids = list(self.query_ids)
            if num_queries is not None:
                if num_queries < 1:
                    raise ValueError(f"num_queries must be at least 1, got {num_queries}")
                picked = rng.choice(len(query_ids), size=min(num_queries, len(query_ids)), replace=False)
                query_ids = [query_ids[i] for i in sorted(picked)]
        for query_id in query_ids:
            self._query(query_id)
        gold = sorted({self.doc_row[d] for q in query_ids for d in self.qrels[q]})
        keep = set(gold)
        if num_docs is not None and num_docs > len(keep):
            others = np.setdiff1d(np.arange(len(self.doc_ids)), np.asarray(gold, dtype=np.int64))
            extra = rng.choice(others, size=min(num_docs - len(keep), len(others)), replace=False)
            keep.update(int(i) for i in extra)
        elif num_docs is None:
            keep = set(range(len(self.doc_ids)))
        rows = sorted(keep)
        qrows = [self.query_row[q] for q in query_ids]
        return RetrievalDataset(
            name=self.name if len(rows) == len(self.doc_ids) else f"{self.name}[{len(rows)} docs]",
            split=self.split,
            doc_ids=[self.doc_ids[i] for i in rows],
            titles=[self.titles[i] for i in rows],
            texts=[self.texts[i] for i in rows],
            query_ids=[self.query_ids[i] for i in qrows],
            query_texts=[self.query_texts[i] for i in qrows],
            qrels={q: dict(self.qrels[q]) for q in query_ids},
        )


    def save_beir(self, folder: str | Path) -> Path:
        """Write this dataset as a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)
        that `load_dataset` reads back the same: a subset for a server's ``--dataset``, or your own data."""
        folder = Path(folder)
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
            for doc_id, title, text in zip(self.doc_ids, self.titles, self.texts):
                corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
        with open(folder / "queries.jsonl", "w", encoding="utf-8") as queries:
            for query_id, text in zip(self.query_ids, self.query_texts):
                queries.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
        with open(folder / "qrels" / f"{self.split}.tsv", "w", encoding="utf-8", newline="") as qrels:
            writer = csv.writer(qrels, delimiter="\t", lineterminator="\n")
            writer.writerow(["query-id", "corpus-id", "score"])
            for query_id in self.query_ids:
                writer.writerows((query_id, doc_id, grade) for doc_id, grade in self.qrels[query_id].items())
        return folder

def load_dataset(name_or_path: str | Path | RetrievalDataset | Mapping[str, Any], split: str = "test", *,
                 dev_fraction: float = 0.0) -> RetrievalDataset:
    """Load retrieval data: a bundled name, a BEIR folder, or a Hugging Face dataset (object or folder).

    Args:
        name_or_path: one of `BUNDLED_DATASETS`; a BEIR folder; a folder with ``corpus/``,
            ``queries/`` and ``qrels/`` saved by Hugging Face ``datasets`` (``save_to_disk``); a
            Hugging Face hub id ``owner/name`` of a dataset in BEIR layout (``corpus`` and ``queries``
            configs; qrels in a ``default`` or ``qrels`` config, or in ``owner/name-qrels`` as ``BeIR/*``
            keeps them), read with ``datasets.load_dataset`` where the hub can be reached; a
            mapping with ``"corpus"``, ``"queries"`` and ``"qrels"`` (a ``DatasetDict`` keyed by
            split, or one dataset) of Hugging Face datasets or lists of dicts; or a loaded
            `RetrievalDataset` (returned as is).
        split: the qrels split to load (``"test"``, ``"train"``, ``"dev"``...).
        dev_fraction: for a dataset without ``dev`` qrels, carve a dev split off its ``train`` split
            (`carve_dev`): ``split="dev"`` then gives the carved queries and ``split="train"`` the rest.
            A dataset with ``dev`` qrels keeps them (the fraction is not used). 0: no carving.
    """
    if isinstance(name_or_path, RetrievalDataset):
        return name_or_path
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction is a share of the train split's queries, in [0, 1); got {dev_fraction}.")
    if dev_fraction > 0 and split in ("train", "dev") and "dev" not in available_splits(name_or_path):
        train, dev = carve_dev(_load(name_or_path, "train"), dev_fraction)
        return dev if split == "dev" else train
    return _load(name_or_path, split)


def available_splits(name_or_path: str | Path | RetrievalDataset | Mapping[str, Any]) -> list[str]:
    """The qrels splits a dataset holds (without reading its corpus where the layout allows)."""
    if isinstance(name_or_path, RetrievalDataset):
        return [name_or_path.split]
    if isinstance(name_or_path, Mapping):
        qrels = name_or_path.get("qrels")
        return sorted(qrels) if isinstance(qrels, Mapping) else []
    if _is_hub_id(name_or_path):
        return sorted(_hub_qrels(str(name_or_path), _hub_configs(str(name_or_path))))
    path = _resolve(name_or_path)
    if (path / "corpus").is_dir() and (path / "qrels").is_dir():  # a Hugging Face folder
        require("datasets", f"Reading the Hugging Face dataset folder {path}", "datasets")
        import datasets

        qrels = datasets.load_from_disk(str(path / "qrels"))
        return sorted(qrels) if isinstance(qrels, Mapping) else []
    return sorted(p.name.split(".")[0] for p in (path / "qrels").glob("*.tsv*")) if (path / "qrels").is_dir() else []


def carve_dev(dataset: RetrievalDataset, fraction: float) -> tuple[RetrievalDataset, RetrievalDataset]:
    """(train, dev) of a train split: a share ``fraction`` of its queries (at least one) form ``dev``, the rest
    ``train``; both keep the whole corpus. Queries go to dev in the order of the SHA-1 of their ids, so the
    split depends on the ids alone: the same for every seed, and the same queries stay out of training."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction is a share of the queries, in (0, 1); got {fraction}.")
    if len(dataset.query_ids) < 2:
        raise DataError(f"{dataset.name}: {len(dataset.query_ids)} train query cannot be split into train and dev; "
                        "add queries or give the dataset its own qrels/dev.tsv.")
    order = sorted(dataset.query_ids, key=lambda q: hashlib.sha1(q.encode()).hexdigest())
    size = min(len(order) - 1, max(1, round(fraction * len(order))))
    dev_ids = set(order[:size])
    train = dataset.subset(query_ids=[q for q in dataset.query_ids if q not in dev_ids])
    dev = dataset.subset(query_ids=[q for q in dataset.query_ids if q in dev_ids])
    train.split, dev.split = "train", "dev"
    logger.info("%s: %d dev queries carved off the train split (%d left to train on)", dataset.name, size,
                len(train.query_ids))
    return train, dev


def _dev_hint(split: str) -> str:
    return (" To carve a dev split off the train split, pass --dev-fraction (e.g. 0.05; `dev_fraction=` in Python), or "
            "write qrels/dev.tsv." if split == "dev" else "")


def _load(name_or_path: str | Path | RetrievalDataset | Mapping[str, Any], split: str) -> RetrievalDataset:
    if isinstance(name_or_path, RetrievalDataset):
        return name_or_path
    if isinstance(name_or_path, Mapping):
        return _from_hf_mapping(name_or_path, split, name="in-memory dataset")
    if _is_hub_id(name_or_path):
        return _from_hf_mapping(_hub_parts(str(name_or_path)), split, name=str(name_or_path))
    path = _resolve(name_or_path)
    if _find(path, "corpus.jsonl") is not None:
        return _from_beir_folder(path, split)
    if (path / "corpus").is_dir():
        return _from_hf_folder(path, split)
    raise DataError(f"{path} is neither a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) nor a "
                    "Hugging Face dataset folder (corpus/, queries/, qrels/ saved with save_to_disk).")


def _resolve(name_or_path: str | Path) -> Path:
    name = str(name_or_path)
    if name in BUNDLED_DATASETS:
        return Path(str(resources.files("sr3_env") / "datasets" / name))
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    close = difflib.get_close_matches(name, BUNDLED_DATASETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise DatasetNotFoundError(f"No dataset {name!r}: it is neither a bundled dataset {list(BUNDLED_DATASETS)}, a folder, nor "
                               f"a Hugging Face hub id (owner/name).{hint} Pass the path of a BEIR folder (corpus.jsonl, "
                               "queries.jsonl, qrels/<split>.tsv).")


def _find(folder: Path, filename: str) -> Path | None:
    for candidate in (folder / filename, folder / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: a byte-order mark at the start of a file (some Windows editors write one) is skipped
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


#: What reading a damaged file raises: a truncated or corrupt gzip stream, bytes that are not UTF-8, a disk error.
_UNREADABLE = (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error)


def _first_non_utf8_line(path: Path) -> int | None:
    """The number of the first line that is not valid UTF-8 (read again as bytes, on the error path only)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _unreadable(path: Path, lineno: int, error: BaseException) -> DataError:
    where = f"after line {lineno}" if lineno else "from its start"
    if isinstance(error, UnicodeDecodeError):
        bad = _first_non_utf8_line(path)
        where = f"at line {bad}" if bad else where
        what = f"bytes that are not UTF-8 ({error.reason}: {error.object[error.start:error.start + 4]!r})"
        fix = "Save the file as UTF-8."
    elif isinstance(error, csv.Error):
        what, fix = f"a line the TSV reader rejects ({error})", "Check that line (a NUL byte, a very long field?)."
    else:
        what = f"{type(error).__name__}: {error}"
        fix = "The file is truncated or corrupt (a .gz file cut short?): copy or download it again."
    return DataError(f"{path}: cannot be read {where}: {what}. {fix}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file; a damaged file raises `DataError` naming it and the line."""
    lineno = 0
    try:
        with _open_text(path) as lines:
            for lineno, line in enumerate(lines, start=1):
                yield lineno, line
    except _UNREADABLE as error:
        raise _unreadable(path, lineno, error) from None


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(location, record)`` for every non-blank line; location is ``file:line``."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: malformed JSON ({error.msg} at column {error.colno}). Each line must hold one JSON object.") from None
        except RecursionError:
            raise DataError(f"{where}: JSON nested too deeply to read. Each line must hold one flat JSON object.") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}.")
        yield where, record


def _string_field(record: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise DataError(f"{where}: missing field {key!r} (a record needs {key!r}; it has {sorted(record)}).")
        return ""
    if isinstance(value, (int, float)) and key == "_id" and not isinstance(value, bool):
        return str(value)  # numeric ids are common in BEIR sets
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}.")
    return value


def _collect_corpus(records: Iterator[tuple[str, Mapping[str, Any]]], source: str) -> tuple[list[str], list[str], list[str]]:
    ids, titles, texts, seen = [], [], [], {}
    for where, record in records:
        doc_id = _string_field(record, "_id", where)
        if doc_id in seen:
            raise DataError(f"{where}: duplicate document id {doc_id!r} (first at {seen[doc_id]}).")
        seen[doc_id] = where
        ids.append(doc_id)
        titles.append(_string_field(record, "title", where, required=False))
        texts.append(_string_field(record, "text", where))
    if not ids:
        raise DataError(f"{source}: the corpus is empty; a retrieval dataset needs at least one document.")
    return ids, titles, texts


def _collect_queries(records: Iterator[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    queries: dict[str, str] = {}
    origin: dict[str, str] = {}
    for where, record in records:
        query_id = _string_field(record, "_id", where)
        if query_id in queries:
            raise DataError(f"{where}: duplicate query id {query_id!r} (first at {origin[query_id]}).")
        origin[query_id] = where
        queries[query_id] = _string_field(record, "text", where)
    return queries


def _collect_qrels(rows: Iterator[tuple[str, Sequence[Any]]]) -> dict[str, dict[str, tuple[int, str]]]:
    qrels: dict[str, dict[str, tuple[int, str]]] = {}
    for where, row in rows:
        if len(row) != 3:
            raise DataError(f"{where}: expected 3 columns (query-id, corpus-id, score), got {len(row)}: {list(row)!r}.")
        query_id, doc_id, raw_score = (str(row[0]).strip(), str(row[1]).strip(), row[2])
        score = _grade(raw_score, where)
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            raise DataError(f"{where}: the pair ({query_id!r}, {doc_id!r}) is judged twice (first at {judged[doc_id][1]}).")
        judged[doc_id] = (score, where)
    return qrels


def _grade(raw: Any, where: str) -> int:
    """A relevance grade: an integer, or a float with no fractional part (``1.0``, as Hugging Face
    qrels often store them); anything else is an error that says where."""
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: score {raw!r} is not an integer.") from None
    if not value.is_integer():
        raise DataError(f"{where}: score {raw!r} is not a whole number; relevance grades are integers (0, 1, 2, ...).")
    return int(value)


def _read_qrels_tsv(path: Path) -> Iterator[tuple[str, list[str]]]:
    lineno = 0
    try:
        with _open_text(path) as lines:
            reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None:
                return
            if [h.strip().lower() for h in header] != ["query-id", "corpus-id", "score"]:
                raise DataError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header!r}.")
            for lineno, row in enumerate(reader, start=2):
                if row and any(cell.strip() for cell in row):
                    yield f"{path}:{lineno}", row
    except _UNREADABLE as error:
        raise _unreadable(path, lineno, error) from None


def _assemble(name: str, split: str, corpus: tuple[list[str], list[str], list[str]], queries: dict[str, str],
              qrels: dict[str, dict[str, tuple[int, str]]], qrels_source: str) -> RetrievalDataset:
    doc_ids, titles, texts = corpus
    known_docs = set(doc_ids)
    relevant: dict[str, dict[str, int]] = {}
    for query_id, judged in qrels.items():
        for doc_id, (score, where) in judged.items():
            if query_id not in queries:
                raise DataError(f"{where}: query id {query_id!r} is not in the queries file.")
            if doc_id not in known_docs:
                raise DataError(f"{where}: corpus id {doc_id!r} is not in the corpus.")
        positive = {doc_id: score for doc_id, (score, _) in judged.items() if score > 0}
        if positive:
            relevant[query_id] = positive
    if not relevant:
        raise DataError(f"{qrels_source}: split {split!r} has no query with a relevant document (score > 0).")
    skipped = len(qrels) - len(relevant)
    if skipped:
        logger.info("%s/%s: %d judged queries have no relevant document and are left out", name, split, skipped)
    query_ids = [q for q in queries if q in relevant]  # the queries file's order
    return RetrievalDataset(name=name, split=split, doc_ids=doc_ids, titles=titles, texts=texts, query_ids=query_ids,
                            query_texts=[queries[q] for q in query_ids], qrels={q: relevant[q] for q in query_ids})


def _from_beir_folder(folder: Path, split: str) -> RetrievalDataset:
    corpus_path = _find(folder, "corpus.jsonl")
    queries_path = _find(folder, "queries.jsonl")
    if queries_path is None:
        raise DataError(f"{folder}: queries.jsonl is missing (a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv).")
    qrels_path = _find(folder / "qrels", f"{split}.tsv")
    if qrels_path is None:
        available = sorted(p.name.split(".")[0] for p in (folder / "qrels").glob("*.tsv*")) if (folder / "qrels").is_dir() else []
        raise SplitNotFoundError(f"{folder}: no qrels for split {split!r} (qrels/{split}.tsv). Splits available: "
                                 f"{available or 'none'}.{_dev_hint(split)}")
    corpus = _collect_corpus(_read_jsonl(corpus_path), str(corpus_path))
    queries = _collect_queries(_read_jsonl(queries_path))
    qrels = _collect_qrels(_read_qrels_tsv(qrels_path))
    return _assemble(folder.name, split, corpus, queries, qrels, str(qrels_path))


def _rows(table: Any, label: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for i, row in enumerate(table):
        if not isinstance(row, Mapping):
            raise DataError(f"row {i} of {label}: expected a mapping of column to value, got {type(row).__name__}.")
        yield f"row {i} of {label}", row


def _qrel_rows(table: Any, label: str) -> Iterator[tuple[str, Sequence[Any]]]:
    for where, row in _rows(table, label):
        missing = [key for key in ("query-id", "corpus-id", "score") if key not in row]
        if missing:
            raise DataError(f"{where}: missing column(s) {missing}; qrels need 'query-id', 'corpus-id' and 'score'.")
        yield where, (row["query-id"], row["corpus-id"], row["score"])


def _from_hf_mapping(data: Mapping[str, Any], split: str, name: str) -> RetrievalDataset:
    missing = [key for key in ("corpus", "queries", "qrels") if key not in data]
    if missing:
        raise DataError(f"{name}: missing {missing}; a Hugging Face retrieval dataset needs 'corpus', 'queries' and 'qrels'.")
    qrels_table = data["qrels"]
    if isinstance(qrels_table, Mapping):  # a DatasetDict keyed by split
        if split not in qrels_table:
            raise SplitNotFoundError(f"{name}: no qrels for split {split!r}. Splits available: {sorted(qrels_table)}."
                                     f"{_dev_hint(split)}")
        qrels_table = qrels_table[split]
    corpus = _collect_corpus(_rows(data["corpus"], f"{name} corpus"), f"{name} corpus")
    queries = _collect_queries(_rows(data["queries"], f"{name} queries"))
    qrels = _collect_qrels(_qrel_rows(qrels_table, f"{name} qrels[{split}]"))
    return _assemble(name, split, corpus, queries, qrels, f"{name} qrels[{split}]")


def _from_hf_folder(folder: Path, split: str) -> RetrievalDataset:
    require("datasets", f"Reading the Hugging Face dataset folder {folder}", "datasets")
    import datasets

    parts = {}
    for part in ("corpus", "queries", "qrels"):
        if not (folder / part).is_dir():
            raise DataError(f"{folder}: {part}/ is missing (a Hugging Face retrieval folder holds corpus/, queries/ and qrels/).")
        parts[part] = datasets.load_from_disk(str(folder / part))
    return _from_hf_mapping(parts, split, name=folder.name)


# -- Hugging Face hub ids ---------------------------------------------------------------------------

#: ``owner/name``, as the hub spells a dataset id (``BeIR/scifact``, ``mteb/scifact``).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def _is_hub_id(name_or_path: Any) -> bool:
    """Whether ``name_or_path`` is read as a Hugging Face hub dataset id: a string ``owner/name`` that is
    neither a bundled dataset nor an existing local path (a folder of that name wins)."""
    if not isinstance(name_or_path, str) or not _HUB_ID.fullmatch(name_or_path):
        return False
    path = Path(name_or_path).expanduser()
    # a local folder of that name wins; where its parent is a local folder, a missing path was meant, not the hub
    return name_or_path not in BUNDLED_DATASETS and not path.exists() and not path.parent.is_dir()


def _hub_unreachable(hub_id: str, error: BaseException) -> DatasetNotFoundError:
    offline = [name for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
               if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")]
    why = f"{' and '.join(offline)} {'is' if len(offline) == 1 else 'are'} set" if offline else "it did not answer"
    return DatasetNotFoundError(
        f"{hub_id!r} is read as a Hugging Face hub dataset id (there is no folder of that name here), but the hub "
        f"cannot be reached ({why}; {type(error).__name__}: {error}). Pass a local folder instead: a BEIR folder "
        "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or the dataset's corpus, queries and qrels saved with "
        "`save_to_disk` where the hub is reachable and copied here (docs/data.md, \"Hugging Face datasets\").")


def _hub_configs(hub_id: str) -> list[str]:
    require("datasets", f"Reading {hub_id!r} as a Hugging Face hub dataset id (there is no folder of that name here)",
            "datasets")
    import datasets

    try:
        return list(datasets.get_dataset_config_names(hub_id))
    except ConnectionError as error:  # offline mode, or no network (datasets raises ConnectionError for both)
        raise _hub_unreachable(hub_id, error) from error
    except FileNotFoundError as error:  # datasets' DatasetNotFoundError: no such dataset, or a private one
        raise DatasetNotFoundError(f"No dataset {hub_id!r}: not a folder here, and the Hugging Face hub has no "
                                   f"dataset of that id that you can read ({error}).") from error


def _hub_load(*args: Any) -> Any:
    require("datasets", f"Reading {args[0]!r} as a Hugging Face hub dataset id", "datasets")
    import datasets

    try:
        return datasets.load_dataset(*args)
    except ConnectionError as error:
        raise _hub_unreachable(args[0], error) from error


def _hub_qrels(hub_id: str, configs: Sequence[str]) -> dict[str, Any]:
    """The qrels of a hub dataset, keyed by split: its ``qrels`` or ``default`` config (as ``mteb/*`` holds
    them), else the dataset ``<hub_id>-qrels`` (as ``BeIR/*`` does). A ``validation`` split is sr3's ``dev``."""
    config = next((name for name in ("qrels", "default") if name in configs), None)
    qrels = _hub_load(hub_id, config) if config else _hub_load(f"{hub_id}-qrels")
    qrels = dict(qrels)  # a DatasetDict keyed by split
    if "validation" in qrels and "dev" not in qrels:
        qrels["dev"] = qrels.pop("validation")
    return qrels


def _hub_parts(hub_id: str) -> dict[str, Any]:
    """``corpus``, ``queries`` and ``qrels`` (keyed by split) of a hub dataset in BEIR layout."""
    configs = _hub_configs(hub_id)
    missing = [name for name in ("corpus", "queries") if name not in configs]
    if missing:
        raise DataError(f"{hub_id}: the hub dataset has no {' or '.join(repr(m) for m in missing)} config (it has "
                        f"{configs}); a retrieval dataset in BEIR layout has 'corpus' and 'queries' configs, as "
                        "BeIR/* and mteb/* do. Otherwise write it as a BEIR folder (docs/data.md).")
    parts = {}
    for name in ("corpus", "queries"):
        loaded = _hub_load(hub_id, name)
        if isinstance(loaded, Mapping):  # a DatasetDict: BEIR layout keeps one split named like the config
            if name not in loaded and len(loaded) != 1:
                raise DataError(f"{hub_id}: its {name!r} config has the splits {sorted(loaded)}; expected one, "
                                f"named {name!r}.")
            loaded = loaded[name] if name in loaded else next(iter(loaded.values()))
        parts[name] = loaded
    parts["qrels"] = _hub_qrels(hub_id, configs)
    return parts
