"""The bundled datasets with a ``dev`` split: it loads, is non-empty and shares no query with
``train`` or ``test``; ``semanlink`` stays test-only (zero-shot evaluation)."""

from __future__ import annotations

import pytest

from sr3_env import DataError, load_dataset


@pytest.mark.parametrize("name, sizes", [
    ("wordnet-revdict", {"test": 1000, "train": 20000, "dev": 500}),
    ("python-docstrings", {"test": 344, "train": 1204, "dev": 172}),
])
def test_dev_train_and_test_are_disjoint(name, sizes):
    splits = {split: load_dataset(name, split=split) for split in sizes}
    dev = splits["dev"]
    assert dev.split == "dev" and dev.query_ids
    assert {split: len(ds.query_ids) for split, ds in splits.items()} == sizes
    ids = {split: set(ds.query_ids) for split, ds in splits.items()}
    assert not ids["dev"] & ids["train"]
    assert not ids["dev"] & ids["test"]
    assert not ids["train"] & ids["test"]
    assert all(dev.qrels[q] and all(d in dev.doc_row for d in dev.qrels[q]) for q in dev.query_ids)


def test_semanlink_has_no_dev_or_train_split():
    for split in ("dev", "train"):
        with pytest.raises(DataError, match=r"Splits available: \['test'\]"):
            load_dataset("semanlink", split=split)
