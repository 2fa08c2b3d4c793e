"""load_dataset: BEIR folders, Hugging Face datasets, bundled sets, and clear errors on bad data."""

from __future__ import annotations

import gzip
import json

import pytest

import sr3_env
from sr3_env import DataError, DatasetNotFoundError, load_dataset

CORPUS = [{"_id": f"d{i}", "title": f"title {i}", "text": f"text {i}"} for i in range(6)]
QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}, {"_id": "q3", "text": "only zero"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td0\t2\nq1\td1\t1\nq2\td3\t1\nq3\td4\t0\n"


def write(folder, corpus=CORPUS, queries=QUERIES, qrels=QRELS, gz=False, split="test"):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    files = {"corpus.jsonl": "".join(json.dumps(r) + "\n" for r in corpus) if isinstance(corpus, list) else corpus,
             "queries.jsonl": "".join(json.dumps(r) + "\n" for r in queries) if isinstance(queries, list) else queries,
             f"qrels/{split}.tsv": qrels}
    for name, text in files.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_beir_folder_with_graded_qrels(tmp_path, gz):
    data = load_dataset(write(tmp_path, gz=gz))
    assert len(data.doc_ids) == 6 and data.query_ids == ["q1", "q2"]  # q3 has no relevant document
    assert data.relevant("q1") == {"d0": 2, "d1": 1}
    assert data.documents[0] == "title 0\ntext 0"


def test_bundled_datasets():
    semanlink = load_dataset("semanlink")
    assert (len(semanlink.doc_ids), len(semanlink.query_ids)) == (314, 432)
    test, train = load_dataset("wordnet-revdict"), load_dataset("wordnet-revdict", split="train")
    assert len(test.doc_ids) == 82115 and len(test.query_ids) == 1000 and len(train.query_ids) == 20000
    assert not set(test.query_ids) & set(train.query_ids)


def test_hugging_face_dataset_in_memory_and_on_disk(tmp_path):
    import datasets

    qrels = [{"query-id": q, "corpus-id": d, "score": int(s)} for q, d, s in (line.split("\t") for line in QRELS.strip().split("\n")[1:])]
    parts = {"corpus": datasets.Dataset.from_list(CORPUS), "queries": datasets.Dataset.from_list(QUERIES),
             "qrels": datasets.DatasetDict({"test": datasets.Dataset.from_list(qrels)})}
    in_memory = load_dataset(parts)
    for name, part in parts.items():
        part.save_to_disk(str(tmp_path / "hf" / name))
    on_disk = load_dataset(tmp_path / "hf")
    assert in_memory.qrels == on_disk.qrels == load_dataset(write(tmp_path / "beir")).qrels


@pytest.mark.parametrize("corpus, queries, qrels, message", [
    ('{"_id": "d0", "text": "x"}\n{"_id": "d1", "text": \n', QUERIES, QRELS, r"corpus.jsonl:2: malformed JSON"),
    ('{"_id": "d0"}\n', QUERIES, QRELS, r"corpus.jsonl:1: missing field 'text'"),
    (CORPUS + [CORPUS[0]], QUERIES, QRELS, r"corpus.jsonl:7: duplicate document id 'd0'"),
    (CORPUS, QUERIES + [QUERIES[0]], QRELS, r"queries.jsonl:4: duplicate query id 'q1'"),
    (CORPUS, QUERIES, QRELS + "qX\td0\t1\n", r"test.tsv:6: query id 'qX'"),
    (CORPUS, QUERIES, QRELS + "q1\tdX\t1\n", r"test.tsv:6: corpus id 'dX'"),
    (CORPUS, QUERIES, "q\tc\ts\n", r"test.tsv:1: expected the header"),
    (CORPUS, QUERIES, QRELS + "q2\td5\thigh\n", r"test.tsv:6: score 'high' is not an integer"),
    ("", QUERIES, QRELS, r"the corpus is empty"),
    (CORPUS, QUERIES, "query-id\tcorpus-id\tscore\nq1\td0\t0\n", r"no query with a relevant document"),
])
def test_bad_data_names_the_file_and_line(tmp_path, corpus, queries, qrels, message):
    with pytest.raises(DataError, match=message):
        load_dataset(write(tmp_path, corpus=corpus, queries=queries, qrels=qrels))


def test_missing_split_and_unknown_names(tmp_path):
    with pytest.raises(DataError, match=r"Splits available: \['test'\]"):
        load_dataset(write(tmp_path), split="dev")
    with pytest.raises(DatasetNotFoundError, match="Did you mean 'semanlink'"):
        load_dataset("semanlink2")


def test_subset_keeps_every_gold_document():
    data = load_dataset("semanlink")
    small = data.subset(num_queries=10, num_docs=50, seed=0)
    assert len(small.query_ids) == 10 and len(small.doc_ids) == 50
    assert all(doc in small.doc_row for q in small.query_ids for doc in small.relevant(q))
    with pytest.raises(sr3_env.UnknownIdError, match="Did you mean"):
        data.relevant("transformer")
