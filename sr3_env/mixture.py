"""A weighted mixture of retrieval datasets as one `RetrievalDataset`, to train on more than one kind of text.

A mixture is given as specs, each ``NAME`` or ``NAME:WEIGHT`` (``NAME``: anything `load_dataset`
reads: a bundled name, a BEIR folder, a Hugging Face dataset folder). `mix_datasets` builds one
dataset from several:

- the corpus is the union of the corpora, each document id prefixed by its dataset's name
  (``wordnet-revdict/123``), so ids of different datasets never collide; queries likewise, and the
  qrels point to the prefixed ids. `mixture_source` reads the dataset back from an id;
- each dataset's share of the queries is its normalised weight (largest-remainder rounding), drawn
  with the seed by `RetrievalDataset.subset`, which keeps every relevant document of the drawn
  queries; a corpus size is shared by the weights the same way, so the training index holds
  documents of every dataset. A loop that draws its batches uniformly over the queries then sees,
  on average, each dataset in proportion to its weight.

`load_mixture` reads specs: one spec is exactly `load_dataset` (then `RetrievalDataset.subset` when
sizes are given), so a single dataset gives the same data, to the bit, as before mixtures existed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from sr3_env.data import RetrievalDataset, load_dataset
from sr3_env.errors import DataError

logger = logging.getLogger(__name__)

#: What separates a dataset's name from an id in a mixture (``wordnet-revdict/123``).
SEPARATOR = "/"

_FORMAT = "Write each dataset as NAME or NAME:WEIGHT (a weight > 0), e.g. --dataset wordnet-revdict:3 path/to/beir:1"


def parse_dataset_spec(spec: str) -> tuple[str, float]:
    """``(name, weight)`` of one spec, ``NAME`` (weight 1) or ``NAME:WEIGHT``; `DataError` says how to fix a bad one.

    A spec that names an existing folder is a name even when it holds a colon, and a colon followed by a
    path (``C:\\data``) is part of the name."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"Dataset spec {spec!r} is empty or not text. {_FORMAT}.")
    if Path(spec).expanduser().is_dir():
        return spec, 1.0
    if "," in spec:
        raise DataError(f"Dataset spec {spec!r} holds a ','; give several datasets as separate words. {_FORMAT}.")
    name, colon, tail = spec.rpartition(":")
    if not colon or "/" in tail or "\\" in tail:
        return spec, 1.0
    if not name.strip():
        raise DataError(f"Dataset spec {spec!r} has no name before the ':'. {_FORMAT}.")
    try:
        weight = float(tail)
    except ValueError:
        raise DataError(f"The weight {tail!r} of dataset spec {spec!r} is not a number. {_FORMAT}.") from None
    if not math.isfinite(weight) or weight <= 0:
        raise DataError(f"The weight of dataset spec {spec!r} must be a number > 0, got {tail!r}. {_FORMAT}.")
    return name, weight


def parse_dataset_specs(specs: str | Sequence[str]) -> list[tuple[str, float]]:
    """``(name, weight)`` of each spec (one string or several); `DataError` on a bad spec, on none, or on
    two datasets that would share an id prefix (the same name, or folders with the same last part)."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise DataError(f"No dataset given. {_FORMAT}.")
    parsed = [parse_dataset_spec(spec) for spec in specs]
    seen: dict[str, str] = {}
    for name, _ in parsed:
        prefix = mixture_name(name)
        if prefix in seen:
            raise DataError(f"Datasets {seen[prefix]!r} and {name!r} are both named {prefix!r} in the mixture, whose ids "
                            "are prefixed by that name: give each dataset once (a folder with another last part: rename it).")
        seen[prefix] = name
    return parsed


def mixture_name(name: str) -> str:
    """The id prefix of a dataset given as ``name`` (a bundled name, or a folder's last part)."""
    return Path(name.rstrip("/\\")).name or name


def mixture_source(id_: str) -> str:
    """The dataset a mixture's query or document id came from: its prefix (``wordnet-revdict/123`` -> ``wordnet-revdict``)."""
    return id_.partition(SEPARATOR)[0]


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights``, as integers that sum to ``total`` (largest remainder;
    ties go to the earlier dataset)."""
    shares = [total * w / sum(weights) for w in weights]
    counts = [math.floor(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_remainder[:total - sum(counts)]:
        counts[i] += 1
    return counts


def query_counts(available: Sequence[int], weights: Sequence[float], num_queries: int | None,
                 names: Sequence[str]) -> list[int]:
    """Queries drawn from each dataset: ``num_queries`` (None: as many as the weights allow, all of the
    dataset that runs out first) split by the weights, never more than a dataset holds."""
    shares = [w / sum(weights) for w in weights]
    limit = min(math.floor(a / s + 1e-9) for a, s in zip(available, shares))
    total = limit if num_queries is None else num_queries
    if total > limit:
        short = min(range(len(shares)), key=lambda i: available[i] / shares[i])
        logger.warning("num_queries=%d: %s has %d queries for its share %.3g, so the mixture takes %d queries in all",
                       total, names[short], available[short], shares[short], limit)
        total = limit
    counts = [min(c, a) for c, a in zip(allocate(total, weights), available)]
    for count, name, share in zip(counts, names, shares):
        if count == 0:
            raise DataError(f"{total} queries in all leave dataset {name!r} (share {share:.3g}) none: raise num_queries "
                            "or its weight.")
    return counts


def mix_datasets(datasets: Sequence[RetrievalDataset], weights: Sequence[float], *, num_queries: int | None = None,
                 num_docs: int | None = None, seed: int = 0, names: Sequence[str] | None = None) -> RetrievalDataset:
    """One dataset from several: ids prefixed by each dataset's name, queries and corpus shared by the weights.

    Args:
        datasets: the datasets to mix (each as `load_dataset` returns it).
        weights: one weight > 0 per dataset; normalised to shares of the queries (and of ``num_docs``).
        num_queries: queries in all (None: as many as the weights allow).
        num_docs: documents in all, shared by the weights; each dataset keeps at least the relevant
            documents of its queries (None: every document of every dataset).
        seed: seed of each dataset's draw (`RetrievalDataset.subset`).
        names: the id prefixes (default: each dataset's name).
    """
    names = [d.name for d in datasets] if names is None else list(names)
    _check(datasets, weights, names)
    counts = query_counts([len(d.query_ids) for d in datasets], weights, num_queries, names)
    docs = [None] * len(datasets) if num_docs is None else allocate(num_docs, weights)
    parts = [d.subset(num_queries=n, num_docs=k, seed=seed) for d, n, k in zip(datasets, counts, docs)]
    shares = [w / sum(weights) for w in weights]
    mixed = _concatenate(parts, names, "+".join(f"{n}:{s:.3g}" for n, s in zip(names, shares)))
    logger.info("mixture %s: %s", mixed.name, ", ".join(f"{n} {len(p.query_ids)} queries, {len(p.doc_ids)} documents"
                                                          for n, p in zip(names, parts)))
    return mixed


def load_mixture(specs: str | Sequence[str], split: str = "test", *, num_queries: int | None = None,
                 num_docs: int | None = None, seed: int = 0, dev_fraction: float = 0.0) -> RetrievalDataset:
    """Read the datasets of ``specs`` (`parse_dataset_specs`) and mix them (`mix_datasets`).

    One spec is `load_dataset` itself, cut by `RetrievalDataset.subset` when ``num_queries`` or
    ``num_docs`` is given: the same data as without mixtures, its ids unprefixed and its weight unused.
    ``dev_fraction``: carve a dev split off the train split of each dataset that has no dev qrels (`load_dataset`)."""
    parsed = parse_dataset_specs(specs)
    if len(parsed) == 1:
        dataset = load_dataset(parsed[0][0], split=split, dev_fraction=dev_fraction)
        if num_queries is None and num_docs is None:
            return dataset
        return dataset.subset(num_queries=num_queries, num_docs=num_docs, seed=seed)
    datasets = [load_dataset(name, split=split, dev_fraction=dev_fraction) for name, _ in parsed]
    return mix_datasets(datasets, [w for _, w in parsed], num_queries=num_queries, num_docs=num_docs, seed=seed,
                        names=[mixture_name(name) for name, _ in parsed])


def _check(datasets: Sequence[RetrievalDataset], weights: Sequence[float], names: Sequence[str]) -> None:
    if not datasets or not len(datasets) == len(weights) == len(names):
        raise DataError(f"A mixture needs one weight and one name per dataset: got {len(datasets)} datasets, "
                        f"{len(weights)} weights and {len(names)} names.")
    for name, weight in zip(names, weights):
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise DataError(f"The weight of {name!r} must be a number > 0, got {weight!r}.")
        if not name or SEPARATOR in name:
            raise DataError(f"Dataset name {name!r} cannot prefix ids: give a non-empty name without {SEPARATOR!r}.")
    if len(set(names)) < len(names):
        raise DataError(f"Two datasets of the mixture share a name ({list(names)}): ids are prefixed by it, so give "
                        "each a different name.")


def _concatenate(parts: Sequence[RetrievalDataset], names: Sequence[str], name: str) -> RetrievalDataset:
    """The parts one after another, every id prefixed by its part's name."""
    doc_ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    query_ids: list[str] = []
    query_texts: list[str] = []
    qrels: dict[str, dict[str, int]] = {}
    for prefix, part in zip(names, parts):
        doc_ids += [f"{prefix}{SEPARATOR}{d}" for d in part.doc_ids]
        titles += part.titles
        texts += part.texts
        query_ids += [f"{prefix}{SEPARATOR}{q}" for q in part.query_ids]
        query_texts += part.query_texts
        qrels.update({f"{prefix}{SEPARATOR}{q}": {f"{prefix}{SEPARATOR}{d}": grade for d, grade in part.qrels[q].items()}
                      for q in part.query_ids})
    splits = list(dict.fromkeys(part.split for part in parts))
    return RetrievalDataset(name=name, split="+".join(splits), doc_ids=doc_ids, titles=titles, texts=texts,
                            query_ids=query_ids, query_texts=query_texts, qrels=qrels)
