"""Property-based tests (hypothesis): whatever an agent or a data file throws at sr3_env, the outcome
is a success or one of the package's documented errors (`sr3_env.errors`; for ``reset``, Gymnasium's
too), never another exception from inside; and after any error a valid step still gives exact ranks.

Examples per property are bounded (``max_examples``) so that the default suite stays quick; set
``HYPOTHESIS_PROFILE=long`` for a longer search. The inputs tried are listed in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from conftest import TINY_CORPUS, TINY_EXPECTED, TINY_QRELS, TINY_QUERIES, jsonl_text, qrels_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sr3_env
from sr3_env import HashingEncoder, Sr3Error, load_dataset
from sr3_env.env import RetrievalEmbedEnv
from sr3_env.vector import RetrievalEmbedVectorEnv

settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DIM, NUM_ENVS = 16, 3


@pytest.fixture(scope="module")
def dataset():
    return sr3_env.load_dataset("semanlink").subset(num_queries=20, num_docs=60, seed=0)


@pytest.fixture(scope="module")
def env(dataset):
    return RetrievalEmbedEnv(dataset=dataset, encoder=HashingEncoder(dim=DIM), top_k=10)


@pytest.fixture(scope="module")
def vector_env(dataset):
    return RetrievalEmbedVectorEnv(num_envs=NUM_ENVS, dataset=dataset, encoder=HashingEncoder(dim=DIM), top_k=10)


# -- what an agent may send -------------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_, np.complex64]
TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.bool, torch.complex64]
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64)
extreme = st.sampled_from([0.0, -0.0, 1e-310, 5e-324, 1e-45, 1e38, 3.4e38, 1e300, -1e300, float("nan"), float("inf")])


def arrays_of(shape_strategy):
    return st.sampled_from(DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, shape_strategy, elements=(
        st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64) | extreme
        if np.issubdtype(dtype, np.floating) else None)))


def actions(shape: tuple[int, ...]):
    """Any array (right or wrong shape and dtype, NaN, inf, huge, subnormal), torch tensors, Python objects."""
    right = arrays_of(st.just(shape))
    wrong = arrays_of(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=DIM + 2))
    tensors = st.tuples(st.sampled_from(TORCH_DTYPES), hnp.arrays(np.float64, shape, elements=floats | extreme)).map(
        lambda pair: torch.from_numpy(pair[1]).to(pair[0]))
    python = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300), floats, st.text(max_size=5),
                       st.binary(max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                       st.lists(st.one_of(st.integers(), floats, st.text(max_size=2), st.none()), max_size=DIM + 1),
                       st.lists(st.lists(floats, max_size=DIM + 1), max_size=NUM_ENVS + 1), st.just(object()),
                       st.lists(floats, min_size=shape[-1], max_size=shape[-1]).map(lambda row: [row] * (len(shape) - 1) or row),
                       st.just(np.zeros(shape, dtype=object)), st.just(np.ones(shape, dtype="datetime64[s]")),
                       st.just(np.ma.masked_array(np.ones(shape))))
    return st.one_of(right, wrong, tensors, python)


query_ids = st.one_of(st.sampled_from(["", "q", "0", None, 3, 3.5, (), ("x",), b"id"]), st.text(max_size=8),
                      st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
seeds = st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70))


def options_for(key: str, valid_ids: list[str], count: int | None):
    value = st.sampled_from(valid_ids) | query_ids
    if count is not None:
        value = st.lists(st.sampled_from(valid_ids) | query_ids, min_size=0, max_size=count + 1) | value
    return st.one_of(st.none(), st.fixed_dictionaries({key: value}),
                     st.dictionaries(st.text(max_size=6) | st.integers(), value, max_size=2),
                     st.sampled_from([[], [key], 7, "query_id", np.zeros(2)]))


# -- the oracle: exact ranks by brute force -----------------------------------------------------------

def assert_exact_ranks(task, query_ids_: list[str], unit: np.ndarray, infos: list[dict]) -> None:
    """Every gold rank equals 1 + the number of documents scoring above it under a full matrix product
    (with a tolerance of 1e-5 for floating-point order: the rank must lie between the strict counts)."""
    corpus = task.encoder.encode_documents(task.dataset.documents)  # the encoder is frozen: every row is fresh
    for query_id, action, info in zip(query_ids_, unit, infos):
        scores = corpus @ (action / np.linalg.norm(action))
        for doc_id, rank in zip(info["gold_ids"], info["gold_ranks"]):
            gold = scores[task.dataset.doc_row[doc_id]]
            assert 1 + int((scores > gold + 1e-5).sum()) <= rank <= 1 + int((scores > gold - 1e-5).sum()), (query_id, doc_id)
        assert info["query_id"] == query_id


def valid_step_is_exact(env: RetrievalEmbedEnv, seed: int) -> None:
    _, info = env.reset(seed=seed)
    action = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    _, reward, terminated, _, step_info = env.step(action)
    assert terminated and np.isfinite(reward)
    assert_exact_ranks(env.task, [info["query_id"]], action[None, :], [step_info])


def vector_step_is_exact(envs: RetrievalEmbedVectorEnv, seed: int) -> None:
    _, infos = envs.reset(seed=seed)
    batch = np.random.default_rng(seed).standard_normal((NUM_ENVS, DIM)).astype(np.float32)
    _, rewards, _, _, step_infos = envs.step(batch)
    final = step_infos["final_info"]
    per_env = [{key: final[key][i] for key in ("gold_ids", "gold_ranks", "query_id")} for i in range(NUM_ENVS)]
    assert np.isfinite(rewards).all()
    assert_exact_ranks(envs.task, list(infos["query_id"]), batch, per_env)


ALLOWED_RESET = (Sr3Error, gymnasium.error.Error)


# -- the properties -----------------------------------------------------------------------------------

@given(action=actions((DIM,)), reset_first=st.booleans(), seed=st.integers(0, 1000))
def test_step_takes_anything_and_stays_exact(env, action, reset_first, seed):
    if reset_first:
        env.reset(seed=seed)
    try:
        _, reward, terminated, truncated, info = env.step(action)
    except Sr3Error:
        pass  # InvalidActionError, or ResetNeeded after an episode ended
    else:
        assert np.isfinite(reward) and terminated and not truncated and 1 <= info["rank"] <= len(env.dataset.doc_ids)
    valid_step_is_exact(env, seed)


@given(action=actions((NUM_ENVS, DIM)), seed=st.integers(0, 1000))
def test_vector_step_takes_anything_and_stays_exact(vector_env, action, seed):
    vector_env.reset(seed=seed)
    try:
        _, rewards, _, _, _ = vector_env.step(action)
    except Sr3Error:
        pass
    else:
        assert rewards.shape == (NUM_ENVS,) and np.isfinite(rewards).all()
    vector_step_is_exact(vector_env, seed)


@given(data=st.data())
def test_reset_takes_any_seed_and_options(env, dataset, data):
    seed, options = data.draw(seeds), data.draw(options_for("query_id", dataset.query_ids, None))
    try:
        query, info = env.reset(seed=seed, options=options)
    except ALLOWED_RESET:
        pass
    else:
        assert query == dataset.query_text(info["query_id"])
    valid_step_is_exact(env, data.draw(st.integers(0, 1000)))


@given(data=st.data())
def test_vector_reset_takes_any_seed_and_options(vector_env, dataset, data):
    seed, options = data.draw(seeds), data.draw(options_for("query_ids", dataset.query_ids, NUM_ENVS))
    try:
        queries, infos = vector_env.reset(seed=seed, options=options)
    except ALLOWED_RESET:
        pass
    else:
        assert len(queries) == NUM_ENVS
    vector_step_is_exact(vector_env, data.draw(st.integers(0, 1000)))


def test_unusual_but_valid_actions_rank_like_their_direction(env):
    """A direction is a direction: huge, subnormal, integer, bf16 and float64 versions of one vector give one rank."""
    base = np.random.default_rng(0).standard_normal(DIM)
    variants = [base, base * 1e300, base * 1e-310, base.astype(np.float16), torch.from_numpy(base).to(torch.bfloat16),
                base.tolist(), np.sign(base).astype(np.int8)]
    ranks = []
    for action in variants[:-1]:
        env.reset(seed=3)
        ranks.append(env.step(action)[4]["gold_ranks"])
    assert all(r == ranks[0] for r in ranks[:3]), ranks  # exact scalings of one float64 vector
    env.reset(seed=3)
    env.step(variants[-1])  # an int8 embedding is accepted too


# -- mutated BEIR folders -----------------------------------------------------------------------------

FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")


def beir_texts() -> dict[str, str]:
    return {"corpus.jsonl": jsonl_text(TINY_CORPUS), "queries.jsonl": jsonl_text(TINY_QUERIES),
            "qrels/test.tsv": qrels_text(TINY_QRELS)}


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _insert(data: bytes, draw, piece: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + piece + data[at:]


def _flip(data: bytes, draw) -> bytes:
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]


def _duplicate_line(data: bytes, draw) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines + [lines[draw(st.integers(0, len(lines) - 1))]]) if lines else data


def _drop_line(data: bytes, draw) -> bytes:
    lines = data.splitlines(keepends=True)
    at = draw(st.integers(0, max(0, len(lines) - 1)))
    return b"".join(lines[:at] + lines[at + 1:])


INVALID_UTF8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe9t\xe9"])

MUTATIONS = {
    "bom": lambda data, draw: b"\xef\xbb\xbf" + data,
    "crlf": lambda data, draw: data.replace(b"\n", b"\r\n"),
    "blank lines": lambda data, draw: data.replace(b"\n", b"\n\n   \n"),
    "invalid utf-8": lambda data, draw: _insert(data, draw, draw(INVALID_UTF8)),
    "truncated": lambda data, draw: data[:draw(st.integers(0, max(0, len(data) - 1)))],
    "byte flipped": _flip,
    "nul byte": lambda data, draw: _insert(data, draw, b"\x00"),
    "duplicated line": _duplicate_line,
    "line dropped": _drop_line,
}


def record_mutation(name: str, draw) -> str:
    """A JSON line with a missing, extra, mistyped or enormous field."""
    return draw(st.sampled_from([
        json.dumps({"title": "no id", "text": "x"}), json.dumps({"_id": "extra", "text": "x", "lang": "en", "n": [1]}),
        json.dumps({"_id": "no-text"}), json.dumps({"_id": ["a"], "text": "x"}), json.dumps({"_id": "n", "text": 5}),
        json.dumps({"_id": "d1", "text": "duplicate id"}), json.dumps({"_id": "big", "text": "w " * 5_000_000}),
        json.dumps({"_id": 7, "text": "numeric id"}), json.dumps(["a list"]), "[" * 100_000 + "]" * 100_000,
        '{"_id": "nan", "text": NaN}', json.dumps({"_id": "q9", "text": "\u2028line\u2029separators\ud7ff"}),
    ]))


def qrel_mutation(draw) -> str:
    return draw(st.sampled_from(["q1\td0", "q1\td0\t1\textra", "q1\td0\tx", "q1\td0\t1.5", "q1\td0\tnan", "q1\td0\t1e400",
                                 "q1\tnope\t1", "nope\td0\t1", "q1\td1\t2", "q1\td0\t-1", "\t\t", "q1 d0 1",
                                 "q1\td0\t" + "9" * 200_000, '"q1"\t"d0"\t1']))


@given(data=st.data(), gz=st.booleans())
def test_load_dataset_on_mutated_beir_folders(tmp_path_factory, data, gz):
    folder = tmp_path_factory.mktemp("beir")
    texts = beir_texts()
    target = data.draw(st.sampled_from(FILES), label="file")
    kind = data.draw(st.sampled_from(["bytes", "record"]), label="kind")
    raw = {name: text.encode() for name, text in texts.items()}
    if kind == "record":
        line = qrel_mutation(data.draw) if target.endswith(".tsv") else record_mutation(target, data.draw)
        lines = _lines(texts[target])
        at = data.draw(st.integers(1 if target.endswith(".tsv") else 0, len(lines)), label="at")
        raw[target] = "".join(lines[:at] + [line + "\n"] + lines[at:]).encode()
    else:
        mutation = data.draw(st.sampled_from(sorted(MUTATIONS)), label="mutation")
        raw[target] = MUTATIONS[mutation](raw[target], data.draw)
    truncate_gzip = gz and data.draw(st.booleans(), label="truncate the gzip stream")
    for name, content in raw.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if gz:
            packed = gzip.compress(content)
            if truncate_gzip and name == target:
                packed = packed[:data.draw(st.integers(0, len(packed) - 1), label="gzip bytes kept")]
            path.with_name(path.name + ".gz").write_bytes(packed)
        else:
            path.write_bytes(content)
    try:
        loaded = load_dataset(folder, split="test")
    except Sr3Error as error:
        assert str(folder) in str(error) or "dataset" in str(error)  # the message names the file
    else:
        assert len(loaded.doc_ids) >= 1 and loaded.query_ids and all(loaded.qrels[q] for q in loaded.query_ids)


def test_a_bom_crlf_and_blank_lines_load_like_the_clean_folder(tmp_path):
    folder = tmp_path / "messy"
    for name, text in beir_texts().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n\r\n").encode())
    loaded = load_dataset(folder)
    assert loaded.query_ids == TINY_EXPECTED["query_ids"] and loaded.qrels == TINY_EXPECTED["qrels"]


def test_a_truncated_gzip_file_is_a_data_error_naming_it(tmp_path):
    folder = tmp_path / "cut"
    for name, text in beir_texts().items():
        path = folder / f"{name}.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(text.encode())[:40] if name == "corpus.jsonl" else gzip.compress(text.encode()))
    with pytest.raises(sr3_env.DataError, match=r"corpus\.jsonl\.gz: cannot be read (after line \d+|from its start): .*download it again"):
        load_dataset(folder)


def test_invalid_utf8_is_a_data_error_naming_the_file(tmp_path):
    folder = tmp_path / "latin1"
    for name, text in beir_texts().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.replace("Cats", "Caf\xe9s").encode("latin-1") if name == "corpus.jsonl" else text.encode())
    with pytest.raises(sr3_env.DataError, match=r"corpus\.jsonl: cannot be read at line 1: bytes that are not UTF-8"):
        load_dataset(folder)


def test_a_10_mb_line_loads(tmp_path):
    corpus = TINY_CORPUS + [{"_id": "huge", "title": "", "text": "word " * 2_000_000}]
    folder = tmp_path / "big"
    for name, text in {**beir_texts(), "corpus.jsonl": jsonl_text(corpus)}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert len(load_dataset(folder).texts[-1]) == 10_000_000


def test_a_misspelt_dataset_name_gets_a_suggestion():
    with pytest.raises(sr3_env.DatasetNotFoundError, match="Did you mean 'wordnet-revdict'"):
        load_dataset("wordnet_revdict")
