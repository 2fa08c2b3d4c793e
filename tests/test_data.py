"""Loading retrieval data: BEIR folders (plain and gzip), bundled sets, Hugging Face datasets, bad data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import (TINY_CORPUS, TINY_EXPECTED, TINY_QRELS, TINY_QUERIES, write_beir, write_corpus, write_qrels,
                      write_queries)

from sr3_env.data import RetrievalDataset, load_dataset
from sr3_env.errors import DataError, DatasetNotFoundError, UnknownIdError


def check_tiny(ds: RetrievalDataset) -> None:
    assert len(ds.doc_ids) == TINY_EXPECTED["num_docs"] == len(ds.texts) == len(ds.titles)
    assert ds.query_ids == TINY_EXPECTED["query_ids"]
    assert ds.qrels == TINY_EXPECTED["qrels"]
    assert ds.split == "test"


# -- BEIR folders ----------------------------------------------------------------------------


def test_tiny_beir_counts_and_graded_qrels(tiny_beir):
    ds = load_dataset(tiny_beir)
    check_tiny(ds)
    assert ds.name == tiny_beir.name
    assert ds.doc_ids == [d["_id"] for d in TINY_CORPUS]
    assert ds.relevant("q1") == {"d1": 2, "d0": 1}
    assert ds.query_text("q2") == "capital city of a european country"
    rows, grades = ds.relevant_rows("q2")
    assert rows.dtype == np.int64 and grades.dtype == np.int64
    assert dict(zip(rows.tolist(), grades.tolist())) == {2: 1, 3: 2}
    assert ds.doc_rows(["d11", "d0"]).tolist() == [11, 0]
    # documents: title then text, text alone when there is no title
    assert ds.documents[0] == "Cats\nCats are small carnivorous mammals kept as pets."
    assert ds.documents[10] == TINY_CORPUS[10]["text"]
    assert "documents=12" in repr(ds) and "queries=3" in repr(ds)


def test_zero_scores_and_unjudged_queries_are_left_out(tiny_beir):
    ds = load_dataset(str(tiny_beir))
    assert "d9" not in ds.relevant("q2")  # 0-score judgement
    assert "q4" not in ds.query_ids  # only a 0-score judgement
    assert "q5" not in ds.query_ids  # never judged
    with pytest.raises(UnknownIdError, match="q4"):
        ds.relevant("q4")
    with pytest.raises(UnknownIdError, match="Did you mean"):
        ds.query_text("q11")
    with pytest.raises(UnknownIdError, match="Did you mean"):
        ds.doc_rows(["d01"])


@pytest.mark.parametrize("gz", [True, False])
def test_gzip_variants_load_the_same(tmp_path, gz):
    folder = write_beir(tmp_path / "z", gz=gz)
    assert (folder / "corpus.jsonl.gz").is_file() is gz
    check_tiny(load_dataset(folder))


def test_mixed_gzip_and_plain_files(tmp_path):
    folder = tmp_path / "mixed"
    write_corpus(folder, gz=True)
    write_queries(folder)
    write_qrels(folder, gz=True)
    check_tiny(load_dataset(folder))


def test_numeric_ids_and_blank_lines_and_missing_title(tmp_path):
    corpus = [{"_id": 1, "text": "one"}, "", {"_id": 2, "title": None, "text": "two"}]
    queries = [{"_id": 7, "text": "first"}]
    folder = write_beir(tmp_path / "num", corpus, queries, [("7", "2", 1), ""])
    ds = load_dataset(folder)
    assert ds.doc_ids == ["1", "2"] and ds.titles == ["", ""]
    assert ds.qrels == {"7": {"2": 1}}


def test_several_splits(tmp_path):
    folder = write_beir(tmp_path / "s", qrels={"test": TINY_QRELS, "train": [("q5", "d8", 1)]})
    assert load_dataset(folder, split="train").query_ids == ["q5"]
    check_tiny(load_dataset(folder, split="test"))


def test_a_loaded_dataset_is_returned_as_is(tiny_beir):
    ds = load_dataset(tiny_beir)
    assert load_dataset(ds) is ds


def test_fingerprint_depends_on_the_corpus(tmp_path, tiny_beir):
    a = load_dataset(tiny_beir)
    assert a.fingerprint() == load_dataset(tiny_beir).fingerprint()
    changed = [dict(d) for d in TINY_CORPUS]
    changed[5]["text"] += "!"
    b = load_dataset(write_beir(tmp_path / "other", corpus=changed))
    assert a.fingerprint() != b.fingerprint()


# -- bundled datasets ------------------------------------------------------------------------


def test_bundled_semanlink():
    ds = load_dataset("semanlink")
    assert (len(ds.doc_ids), len(ds.query_ids)) == (314, 432)
    assert ds.split == "test"
    assert all(ds.qrels[q] and all(s > 0 for s in ds.qrels[q].values()) for q in ds.query_ids)
    assert all(d in ds.doc_row for q in ds.query_ids for d in ds.qrels[q])


def test_bundled_wordnet_revdict_splits_are_disjoint():
    test = load_dataset("wordnet-revdict", split="test")
    train = load_dataset("wordnet-revdict", split="train")
    assert len(test.query_ids) == 1000
    assert len(train.query_ids) == 20000
    assert test.doc_ids == train.doc_ids  # one corpus, two query splits
    assert not set(test.query_ids) & set(train.query_ids)
    assert len(set(test.query_ids)) == 1000 and len(set(train.query_ids)) == 20000


# -- Hugging Face datasets -------------------------------------------------------------------


def hf_parts():
    datasets = pytest.importorskip("datasets")
    qrels = [{"query-id": q, "corpus-id": d, "score": s} for q, d, s in TINY_QRELS]
    return datasets, {
        "corpus": datasets.Dataset.from_list(TINY_CORPUS),
        "queries": datasets.Dataset.from_list(TINY_QUERIES),
        "qrels": datasets.DatasetDict({"test": datasets.Dataset.from_list(qrels),
                                       "train": datasets.Dataset.from_list([{"query-id": "q5", "corpus-id": "d8", "score": 1}])}),
    }


def test_hugging_face_mapping_in_memory():
    datasets, parts = hf_parts()
    check_tiny(load_dataset(parts))
    assert load_dataset(parts, split="train").query_ids == ["q5"]
    # one Dataset (not a DatasetDict) of qrels serves any split
    single = dict(parts, qrels=parts["qrels"]["test"])
    check_tiny(load_dataset(single))
    # plain lists of dicts work too
    lists = {"corpus": TINY_CORPUS, "queries": TINY_QUERIES,
             "qrels": [{"query-id": q, "corpus-id": d, "score": s} for q, d, s in TINY_QRELS]}
    check_tiny(load_dataset(lists))


def test_hugging_face_folder_saved_to_disk(tmp_path):
    datasets, parts = hf_parts()
    folder = tmp_path / "hf"
    for name, part in parts.items():
        part.save_to_disk(str(folder / name))
    ds = load_dataset(folder)
    check_tiny(ds)
    assert ds.name == "hf"
    assert load_dataset(str(folder), split="train").qrels == {"q5": {"d8": 1}}
    with pytest.raises(DataError, match=r"Splits available: \['test', 'train'\]"):
        load_dataset(folder, split="dev")


def test_hugging_face_bad_data():
    _, parts = hf_parts()
    with pytest.raises(DataError, match=r"missing \['qrels'\]"):
        load_dataset({"corpus": parts["corpus"], "queries": parts["queries"]})
    bad_qrels = [{"query-id": "q1", "corpus-id": "d1"}]
    with pytest.raises(DataError, match=r"row 0 of in-memory dataset qrels\[test\].*'score'"):
        load_dataset(dict(parts, qrels=bad_qrels))
    with pytest.raises(DataError, match=r"row 1 of in-memory dataset corpus: duplicate document id 'd0'"):
        load_dataset(dict(parts, corpus=[TINY_CORPUS[0], TINY_CORPUS[0]]))
    with pytest.raises(DataError, match="expected a mapping"):
        load_dataset(dict(parts, queries=["q1"]))


def test_neither_beir_nor_hf_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a BEIR folder"):
        load_dataset(tmp_path / "empty")


# -- bad data: every error names the file and the line ----------------------------------------

GOOD_CORPUS = TINY_CORPUS[:3]
GOOD_QUERIES = TINY_QUERIES[:2]
GOOD_QRELS = [("q1", "d1", 1), ("q2", "d2", 2)]


@pytest.mark.parametrize("corpus, queries, qrels, file, line, message", [
    (GOOD_CORPUS[:2] + ['{"_id": "d2", "text": '], GOOD_QUERIES, GOOD_QRELS, "corpus.jsonl", 3, "malformed JSON"),
    (GOOD_CORPUS, GOOD_QUERIES[:1] + ["[1, 2]"], GOOD_QRELS, "queries.jsonl", 2, "expected a JSON object"),
    (GOOD_CORPUS[:1] + [{"_id": "d1", "title": "x"}], GOOD_QUERIES, GOOD_QRELS, "corpus.jsonl", 2, "missing field 'text'"),
    (GOOD_CORPUS, [{"text": "no id"}], GOOD_QRELS, "queries.jsonl", 1, "missing field '_id'"),
    (GOOD_CORPUS + [{"_id": "d0", "text": "again"}], GOOD_QUERIES, GOOD_QRELS, "corpus.jsonl", 4,
     r"duplicate document id 'd0' \(first at .*corpus.jsonl:1\)"),
    (GOOD_CORPUS, GOOD_QUERIES + [{"_id": "q1", "text": "again"}], GOOD_QRELS, "queries.jsonl", 3,
     "duplicate query id 'q1'"),
    (GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS + [("q9", "d1", 1)], "test.tsv", 4, "query id 'q9' is not in the queries file"),
    (GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS + [("q1", "d99", 1)], "test.tsv", 4, "corpus id 'd99' is not in the corpus"),
    (GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS + [("q1", "d2", "high")], "test.tsv", 4, "score 'high' is not an integer"),
    (GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS + [("q1", "d2", "1.5")], "test.tsv", 4, "'1.5' is not a whole number"),
    (GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS + ["q1\td2"], "test.tsv", 4, "expected 3 columns"),
    (GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS + [("q1", "d1", 2)], "test.tsv", 4, "judged twice"),
    (GOOD_CORPUS, [{"_id": "q1", "text": 5}], GOOD_QRELS[:1], "queries.jsonl", 1, "must be a string"),
])
def test_bad_data_names_file_and_line(tmp_path, corpus, queries, qrels, file, line, message):
    folder = write_beir(tmp_path / "bad", corpus, queries, qrels)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(folder)
    assert f"{file}:{line}" in str(caught.value)


def test_whole_number_float_grades_are_read_as_integers(tmp_path):
    folder = write_beir(tmp_path / "floats", GOOD_CORPUS, GOOD_QUERIES, [("q1", "d1", "1.0"), ("q2", "d2", "2.0")])
    assert load_dataset(folder).qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}


@pytest.mark.parametrize("gz", [False, True])
def test_bad_data_in_gzip_files_names_the_gz_file(tmp_path, gz):
    folder = write_beir(tmp_path / "badgz", GOOD_CORPUS + ["not json"], GOOD_QUERIES, GOOD_QRELS, gz=gz)
    with pytest.raises(DataError, match="malformed JSON") as caught:
        load_dataset(folder)
    suffix = ".gz" if gz else ""
    assert f"corpus.jsonl{suffix}:4" in str(caught.value)


@pytest.mark.parametrize("header", ["qid\tdocid\trel", "query-id\tcorpus-id", "q1\td1\t1"])
def test_bad_qrels_header(tmp_path, header):
    folder = write_beir(tmp_path / "hdr", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS, header=header)
    with pytest.raises(DataError, match="expected the header") as caught:
        load_dataset(folder)
    assert "test.tsv:1" in str(caught.value)


def test_header_is_case_and_space_insensitive(tmp_path):
    folder = write_beir(tmp_path / "hdr", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS, header="Query-ID\tCorpus-ID \tScore")
    assert load_dataset(folder).query_ids == ["q1", "q2"]


def test_empty_corpus(tmp_path):
    folder = write_beir(tmp_path / "empty", [], GOOD_QUERIES, [])
    with pytest.raises(DataError, match="corpus is empty") as caught:
        load_dataset(folder)
    assert "corpus.jsonl" in str(caught.value)


@pytest.mark.parametrize("qrels", [[], [("q1", "d1", 0)]])
def test_split_without_relevant_documents(tmp_path, qrels):
    folder = write_beir(tmp_path / "none", GOOD_CORPUS, GOOD_QUERIES, qrels)
    with pytest.raises(DataError, match="has no query with a relevant document") as caught:
        load_dataset(folder)
    assert "test.tsv" in str(caught.value)


def test_missing_split_lists_available_splits(tiny_beir):
    write_qrels(tiny_beir, [("q5", "d8", 1)], split="dev", gz=True)
    with pytest.raises(DataError, match=r"no qrels for split 'train'.*Splits available: \['dev', 'test'\]"):
        load_dataset(tiny_beir, split="train")


def test_missing_queries_file(tmp_path):
    folder = tmp_path / "noq"
    write_corpus(folder)
    write_qrels(folder)
    with pytest.raises(DataError, match="queries.jsonl is missing"):
        load_dataset(folder)


def test_unknown_dataset_name_suggests_a_bundled_one():
    with pytest.raises(DatasetNotFoundError, match="Did you mean 'semanlink'"):
        load_dataset("semanlinc")
    with pytest.raises(DatasetNotFoundError, match="Did you mean 'wordnet-revdict'"):
        load_dataset("wordnet_revdict")
    with pytest.raises(FileNotFoundError, match="neither a bundled dataset"):  # also a FileNotFoundError
        load_dataset("/no/such/folder/anywhere")


def test_errors_are_value_errors_too(tmp_path):
    folder = write_beir(tmp_path / "x", ["{"], GOOD_QUERIES, GOOD_QRELS)
    with pytest.raises(ValueError):
        load_dataset(folder)
    # the line and the file are shown verbatim, not as a quoted KeyError
    ds = load_dataset(write_beir(tmp_path / "y"))
    with pytest.raises(KeyError) as caught:
        ds.relevant("nope")
    assert str(caught.value).startswith("Query id 'nope'")


# -- subset ----------------------------------------------------------------------------------


def test_subset_keeps_every_gold_doc_and_respects_num_docs():
    ds = load_dataset("semanlink")
    sub = ds.subset(num_queries=20, num_docs=100, seed=3)
    assert len(sub.query_ids) == 20
    gold = {d for q in sub.query_ids for d in sub.qrels[q]}
    assert len(sub.doc_ids) == max(100, len(gold))
    assert gold <= set(sub.doc_ids)
    for q in sub.query_ids:  # same texts and judgements as the parent
        assert sub.qrels[q] == ds.qrels[q]
        assert sub.query_text(q) == ds.query_text(q)
    for d in sub.doc_ids:
        assert sub.documents[sub.doc_row[d]] == ds.documents[ds.doc_row[d]]
    assert sub.doc_ids == sorted(sub.doc_ids, key=ds.doc_row.__getitem__)  # parent order kept
    # deterministic for a seed
    assert sub.doc_ids == ds.subset(num_queries=20, num_docs=100, seed=3).doc_ids
    assert "[100 docs]" in sub.name or len(gold) > 100


def test_subset_never_drops_gold_below_num_docs(tiny_beir):
    ds = load_dataset(tiny_beir)
    sub = ds.subset(query_ids=["q1", "q2"], num_docs=1)
    assert sorted(sub.doc_ids) == ["d0", "d1", "d2", "d3"]
    assert sub.query_ids == ["q1", "q2"]
    full = ds.subset(query_ids=["q3"])
    assert full.doc_ids == ds.doc_ids and full.name == ds.name
    big = ds.subset(num_docs=1000)
    assert len(big.doc_ids) == 12
    with pytest.raises(UnknownIdError):
        ds.subset(query_ids=["q4"])
    with pytest.raises(ValueError, match="num_queries"):
        ds.subset(num_queries=0)


def test_written_files_are_what_the_helpers_say(tiny_beir):
    lines = (tiny_beir / "qrels" / "test.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    assert "q1\td1\t2" in lines and "q2\td9\t0" in lines
    first = json.loads((tiny_beir / "corpus.jsonl").read_text().splitlines()[0])
    assert set(first) == {"_id", "title", "text"}


def test_hugging_face_folder_with_one_qrels_dataset_and_numeric_ids(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hf1"
    datasets.Dataset.from_list([{"_id": i, "title": "", "text": f"doc {i}"} for i in range(4)]).save_to_disk(str(folder / "corpus"))
    datasets.Dataset.from_list([{"_id": 10, "text": "ten"}, {"_id": 11, "text": "eleven"}]).save_to_disk(str(folder / "queries"))
    datasets.Dataset.from_list([{"query-id": 10, "corpus-id": 3, "score": 2},
                                {"query-id": 11, "corpus-id": 0, "score": 0}]).save_to_disk(str(folder / "qrels"))
    ds = load_dataset(folder, split="anything")  # one qrels Dataset serves every split
    assert ds.doc_ids == ["0", "1", "2", "3"]
    assert ds.query_ids == ["10"] and ds.qrels == {"10": {"3": 2}}


def test_hugging_face_folder_missing_a_part(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hf2"
    datasets.Dataset.from_list(TINY_CORPUS).save_to_disk(str(folder / "corpus"))
    with pytest.raises(DataError, match="queries/ is missing"):
        load_dataset(folder)
