"""Shared fixtures: a tiny BEIR folder written on the fly, helpers to write variations of it, and a
tiny random-weight `ReasoningEmbedder` (built once per session, deep-copied per test).

``tiny_beir`` returns the path of a folder with ``corpus.jsonl`` (12 documents), ``queries.jsonl``
(5 queries) and ``qrels/test.tsv`` (graded scores, including a 2 and a 0). What the loader should
make of it is spelled out in ``TINY_EXPECTED`` so that tests can compare against it.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest
import torch

from sr3_agent.model.tiny_models import TINY_FAMILIES, sliding_families, tiny_model

#: 12 documents about distinct topics (so that lexical encoders can tell them apart).
TINY_CORPUS: list[dict[str, str]] = [
    {"_id": "d0", "title": "Cats", "text": "Cats are small carnivorous mammals kept as pets."},
    {"_id": "d1", "title": "Dogs", "text": "Dogs are loyal domesticated descendants of wolves."},
    {"_id": "d2", "title": "Paris", "text": "Paris is the capital of France on the river Seine."},
    {"_id": "d3", "title": "Berlin", "text": "Berlin is the capital and largest city of Germany."},
    {"_id": "d4", "title": "Python", "text": "Python is a programming language with dynamic typing."},
    {"_id": "d5", "title": "Rust", "text": "Rust is a systems programming language focused on safety."},
    {"_id": "d6", "title": "Photosynthesis", "text": "Plants convert sunlight into chemical energy."},
    {"_id": "d7", "title": "Volcanoes", "text": "A volcano erupts molten rock called lava."},
    {"_id": "d8", "title": "Chess", "text": "Chess is a board game for two players on a checkered board."},
    {"_id": "d9", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
    {"_id": "d10", "title": "", "text": "The moon orbits the earth roughly every 27 days."},
    {"_id": "d11", "title": "Tea", "text": "Tea is an aromatic beverage made from the leaves of the tea plant."},
]

#: 5 queries; ``q4`` has only a 0-score judgement and ``q5`` no judgement at all.
TINY_QUERIES: list[dict[str, str]] = [
    {"_id": "q1", "text": "which pets are descended from wolves"},
    {"_id": "q2", "text": "capital city of a european country"},
    {"_id": "q3", "text": "programming language"},
    {"_id": "q4", "text": "how do volcanoes erupt"},
    {"_id": "q5", "text": "rules of chess"},
]

#: (query-id, corpus-id, score) rows of ``qrels/test.tsv``.
TINY_QRELS: list[tuple[str, str, int]] = [
    ("q1", "d1", 2),
    ("q1", "d0", 1),
    ("q2", "d2", 1),
    ("q2", "d3", 2),
    ("q2", "d9", 0),  # judged not relevant: dropped
    ("q3", "d4", 1),
    ("q3", "d5", 1),
    ("q4", "d7", 0),  # only a 0-score judgement: q4 is left out
]

#: What `load_dataset` should return for the tiny folder's test split.
TINY_EXPECTED = {
    "num_docs": 12,
    "query_ids": ["q1", "q2", "q3"],
    "qrels": {"q1": {"d1": 2, "d0": 1}, "q2": {"d2": 1, "d3": 2}, "q3": {"d4": 1, "d5": 1}},
}

QRELS_HEADER = "query-id\tcorpus-id\tscore"


def _write_text(path: Path, text: str, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl_text(records: Iterable[Mapping | str]) -> str:
    """JSON lines; a record given as a string is written verbatim (to plant malformed lines)."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def qrels_text(rows: Iterable[Sequence | str], header: str | None = QRELS_HEADER) -> str:
    """A qrels TSV; a row given as a string is written verbatim. ``header=None`` writes none."""
    lines = [] if header is None else [header]
    lines += [r if isinstance(r, str) else "\t".join(str(c) for c in r) for r in rows]
    return "".join(line + "\n" for line in lines)


def write_corpus(folder: Path, records: Iterable[Mapping | str] = TINY_CORPUS, gz: bool = False) -> Path:
    return _write_text(Path(folder) / "corpus.jsonl", jsonl_text(records), gz)


def write_queries(folder: Path, records: Iterable[Mapping | str] = TINY_QUERIES, gz: bool = False) -> Path:
    return _write_text(Path(folder) / "queries.jsonl", jsonl_text(records), gz)


def write_qrels(folder: Path, rows: Iterable[Sequence | str] = TINY_QRELS, split: str = "test", gz: bool = False,
                header: str | None = QRELS_HEADER) -> Path:
    return _write_text(Path(folder) / "qrels" / f"{split}.tsv", qrels_text(rows, header), gz)


def write_beir(folder: Path, corpus: Iterable[Mapping | str] = TINY_CORPUS, queries: Iterable[Mapping | str] = TINY_QUERIES,
               qrels: Iterable[Sequence | str] | Mapping[str, Iterable[Sequence | str]] = TINY_QRELS, *, gz: bool = False,
               header: str | None = QRELS_HEADER) -> Path:
    """Write a BEIR folder. ``qrels`` is one split's rows (written as ``test``) or ``{split: rows}``.

    ``gz`` may be True (compress every file) or False. Returns ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_corpus(folder, corpus, gz=gz)
    write_queries(folder, queries, gz=gz)
    splits = qrels if isinstance(qrels, Mapping) else {"test": qrels}
    for split, rows in splits.items():
        write_qrels(folder, rows, split=split, gz=gz, header=header)
    return folder


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """Path of a freshly written tiny BEIR folder (12 docs, 3 usable test queries; see TINY_EXPECTED)."""
    return write_beir(tmp_path / "tiny")


@pytest.fixture
def tiny_beir_factory(tmp_path: Path):
    """``make(name="tiny", **write_beir_kwargs) -> Path``: write more tiny BEIR folder variants."""

    def make(name: str = "tiny", **kwargs) -> Path:
        return write_beir(tmp_path / name, **kwargs)

    return make


# -- a tiny random-weight embedder (the real tokenizer and chat template, a 2-layer model) -------

@pytest.fixture(scope="session")
def _tiny_embedder_session():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sr3_agent.model.embedder import EMBED_TOKEN, ReasoningEmbedder
    from sr3_agent.model.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model())  # bundled SmolLM2 tokenizer (cached folder)
    tokenizer.add_special_tokens({"additional_special_tokens": [EMBED_TOKEN]})
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    return ReasoningEmbedder(model, tokenizer, max_length=96, batch_size=4, name="tiny-random")


@pytest.fixture
def tiny_embedder(_tiny_embedder_session):
    """A fresh deep copy per test (tests may train it)."""
    return copy.deepcopy(_tiny_embedder_session)


# -- tiny random-weight models of many families (the architecture matrix: sr3_agent.model.tiny_models) ----

@pytest.fixture(scope="session")
def _family_embedders():
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.model.tiny_models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    built: dict[tuple[str, int | None], object] = {}

    def get(family: str, window: int | None = None):
        if (family, window) not in built:
            built[family, window] = ReasoningEmbedder(tiny_model(family, tokenizer, window=window), tokenizer,
                                                      max_length=96, batch_size=4, name=f"tiny-{family}")
        return copy.deepcopy(built[family, window])

    return get


#: a window longer than every test layout: the sliding-window families on the fast path (their cache layers included)
LONG_WINDOW = 400

#: each family, and each sliding-window family once more with `LONG_WINDOW`
FAMILY_VARIANTS = sorted(TINY_FAMILIES) + [f"{family}/long-window" for family in sliding_families()]


@pytest.fixture(params=FAMILY_VARIANTS)
def family_embedder(request, _family_embedders):
    """A fresh tiny embedder of each of `FAMILY_VARIANTS` (the test runs once per variant)."""
    family, _, variant = request.param.partition("/")
    return _family_embedders(family, window=LONG_WINDOW if variant else None)


def favour_embed_token(embedder, logit: float = 9.0) -> None:
    """Make a random model write <|embed_token|> early in some rows (a bias on its logit: about 1 in 6 per step
    against 49k near-uniform logits), so that caches hold tokens after it that a read must ignore."""
    head = embedder.model.get_output_embeddings()
    with torch.no_grad():
        head.weight[embedder.embed_token_id] *= 0  # shared with the input embeddings (tied)
    bias = torch.zeros(head.weight.shape[0])
    bias[embedder.embed_token_id] = logit
    head.bias = torch.nn.Parameter(bias)
