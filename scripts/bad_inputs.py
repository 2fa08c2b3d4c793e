"""What sr3_env makes of bad input: one row per input tried, with the outcome (accepted, or the error and
its message). The fuzz tests (tests/test_fuzz.py) search the same space at random; this script lists
named cases for docs/reliability.md.

Usage: ``python scripts/bad_inputs.py`` (a few seconds; prints a Markdown table).
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

import gymnasium
import numpy as np
import torch

import sr3_env
from sr3_env import HashingEncoder, load_dataset
from sr3_env.env import RetrievalEmbedEnv
from sr3_env.vector import RetrievalEmbedVectorEnv

DIM = 16
CORPUS = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"document number {i} about topic {i % 3}"} for i in range(8)]
QUERIES = [{"_id": "q1", "text": "topic 1"}, {"_id": "q2", "text": "topic 2"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def outcome(fn, folder: str | None = None) -> str:
    try:
        result = fn()
    except (sr3_env.Sr3Error, gymnasium.error.Error) as error:
        message = " ".join(str(error).split())
        if folder:
            message = message.replace(folder, "FOLDER")
        return f"`{type(error).__name__}`: {message[:150]}{'...' if len(message) > 150 else ''}"
    except Exception as error:  # anything else is a bug: shown as such, the script goes on
        return f"**BUG** `{type(error).__name__}`: {error}"
    return f"accepted{': ' + result if isinstance(result, str) else ''}"


def action_cases() -> list[tuple[str, object]]:
    direction = np.random.default_rng(0).standard_normal(DIM)
    return [
        ("float32 (16,)", direction.astype(np.float32)),
        ("float64 x 1e300 (huge, finite)", direction * 1e300),
        ("float64 x 1e-310 (subnormal)", direction * 1e-310),
        ("float16", direction.astype(np.float16)), ("int8", np.sign(direction).astype(np.int8)),
        ("bool", direction > 0), ("torch bfloat16 tensor", torch.from_numpy(direction).to(torch.bfloat16)),
        ("torch float64 tensor with requires_grad", torch.from_numpy(direction).requires_grad_()),
        ("list of 16 floats", direction.tolist()), ("complex64", direction.astype(np.complex64)),
        ("one NaN", np.where(np.arange(DIM) == 3, np.nan, direction)), ("one inf", np.where(np.arange(DIM) == 3, np.inf, direction)),
        ("every value 1e39 (finite, beyond float32)", np.full(DIM, 1e39)),
        ("zero vector", np.zeros(DIM)), ("shape (15,)", direction[:15]), ("shape (1, 16)", direction[None]),
        ("a scalar", 1.0), ("ragged nested list", [[1.0, 2.0], [3.0]]), ("a string", "embedding"), ("None", None),
        ("a dict", {"x": 1.0}), ("object()", object()), ("16 ints of 10**400", [10**400] * DIM),
        ("datetime64 array", np.ones(DIM, dtype="datetime64[s]")), ("object array of strings", np.array(["a"] * DIM, dtype=object)),
    ]


def beir_cases() -> list[tuple[str, dict]]:
    corpus = "".join(json.dumps(r) + "\n" for r in CORPUS)
    queries = "".join(json.dumps(r) + "\n" for r in QUERIES)
    return [
        ("a byte-order mark at the start of every file", {"bom": True}),
        ("CRLF line ends", {"corpus": corpus.replace("\n", "\r\n"), "qrels": QRELS.replace("\n", "\r\n")}),
        ("blank lines between records", {"corpus": corpus.replace("\n", "\n\n  \n")}),
        ("a 10 MB line (one document of 10 MB)", {"corpus": corpus + json.dumps({"_id": "big", "text": "w " * 5_000_000}) + "\n"}),
        ("corpus.jsonl.gz cut short", {"gz": True, "cut": 60}),
        ("invalid UTF-8 (a Latin-1 file)", {"corpus_bytes": corpus.replace("number", "num\xe9ro").encode("latin-1")}),
        ("a NUL byte in the qrels", {"qrels": QRELS.replace("q2\td2", "q2\x00\td2")}),
        ("duplicate document id", {"corpus": corpus + json.dumps(CORPUS[0]) + "\n"}),
        ("duplicate query id", {"queries": queries + json.dumps(QUERIES[0]) + "\n"}),
        ("a record without _id", {"corpus": corpus + json.dumps({"text": "no id"}) + "\n"}),
        ("a record without text", {"corpus": corpus + json.dumps({"_id": "x"}) + "\n"}),
        ("extra fields in records", {"corpus": corpus + json.dumps({"_id": "x", "text": "t", "lang": "en", "n": [1]}) + "\n"}),
        ("a line that is not JSON", {"corpus": corpus + "{not json\n"}),
        ("JSON nested 100,000 deep", {"corpus": corpus + "[" * 100_000 + "]" * 100_000 + "\n"}),
        ("qrels row with 2 columns", {"qrels": QRELS + "q1\td3\n"}), ("qrels row with 4 columns", {"qrels": QRELS + "q1\td3\t1\tx\n"}),
        ("qrels score 1.5", {"qrels": QRELS + "q1\td3\t1.5\n"}), ("qrels for an unknown document", {"qrels": QRELS + "q1\tnope\t1\n"}),
        ("qrels without a header", {"qrels": QRELS.split("\n", 1)[1]}),
    ]


def write_beir(folder: Path, case: dict) -> Path:
    corpus = case.get("corpus", "".join(json.dumps(r) + "\n" for r in CORPUS)).encode()
    corpus = case.get("corpus_bytes", corpus)
    files = {"corpus.jsonl": corpus, "queries.jsonl": case.get("queries", "".join(json.dumps(r) + "\n" for r in QUERIES)).encode(),
             "qrels/test.tsv": case.get("qrels", QRELS).encode()}
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.get("bom"):
            data = b"\xef\xbb\xbf" + data
        if case.get("gz"):
            packed = gzip.compress(data)
            path.with_name(path.name + ".gz").write_bytes(packed[:case["cut"]] if name == "corpus.jsonl" else packed)
        else:
            path.write_bytes(data)
    return folder


def main() -> int:
    dataset = sr3_env.load_dataset("semanlink").subset(num_queries=10, num_docs=50, seed=0)
    env = RetrievalEmbedEnv(dataset=dataset, encoder=HashingEncoder(dim=DIM), top_k=10)
    envs = RetrievalEmbedVectorEnv(num_envs=2, dataset=dataset, encoder=HashingEncoder(dim=DIM), top_k=10)
    rows = []

    def step(action):
        env.reset(seed=0)
        return f"rank {env.step(action)[4]['rank']}"

    rows += [("`env.step`", name, outcome(lambda a=action: step(a))) for name, action in action_cases()]
    fresh = RetrievalEmbedEnv(dataset=dataset, encoder=HashingEncoder(dim=DIM), top_k=10)
    rows.append(("`env.step`", "before any reset", outcome(lambda: fresh.step(np.ones(DIM)))))
    rows.append(("`env.step`", "twice in one episode", outcome(lambda: (env.reset(seed=0), env.step(np.ones(DIM)),
                                                                        env.step(np.ones(DIM))) and None)))
    rows += [("`env.reset`", name, outcome(lambda kw=kw: env.reset(**kw) and None)) for name, kw in [
        ("seed=-1", {"seed": -1}), ("seed=2**70", {"seed": 2**70}), ("seed='a'", {"seed": "a"}),
        ("options=7", {"options": 7}), ("options={'x': 1}", {"options": {"x": 1}}),
        ("options={'query_id': 'nope'}", {"options": {"query_id": "nope"}}),
        ("options={'query_id': ['a list']}", {"options": {"query_id": ["a list"]}}),
        ("options={'query_id': 3}", {"options": {"query_id": 3}})]]
    rows += [("vector `reset`", name, outcome(lambda kw=kw: envs.reset(**kw) and None)) for name, kw in [
        ("query_ids of the wrong length", {"options": {"query_ids": [dataset.query_ids[0]]}}),
        ("query_ids=5", {"options": {"query_ids": 5}}), ("query_ids='ab'", {"options": {"query_ids": "ab"}})]]
    envs.reset(seed=0)
    rows += [("vector `step`", name, outcome(lambda a=a: envs.step(a) and None)) for name, a in [
        ("(2, 16) with one NaN row", np.stack([np.ones(DIM), np.full(DIM, np.nan)])), ("(3, 16)", np.ones((3, DIM))),
        ("(16,)", np.ones(DIM))]]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, case) in enumerate(beir_cases()):
            folder = write_beir(Path(tmp) / f"case{i}", case)
            rows.append(("`load_dataset`", name, outcome(
                lambda f=folder: f"{len(load_dataset(f).doc_ids)} documents, {len(load_dataset(f).query_ids)} queries",
                folder=str(folder))))
    rows.append(("`load_dataset`", "'wordnet_revdict' (a typo)", outcome(lambda: load_dataset("wordnet_revdict") and None)))
    print("| call | input | outcome |\n|---|---|---|")
    for call, name, result in rows:
        print(f"| {call} | {name} | {result.replace('|', '/')} |")
    return 1 if any("**BUG**" in r for *_, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
