"""Hugging Face hub ids (``owner/name``): read through ``datasets`` in the two BEIR layouts the hub holds
(``BeIR/*``: qrels in a separate ``-qrels`` dataset; ``mteb/*``: qrels in the ``default`` config), and
offline a clear error that names the local-folder alternative.

This machine has no hub access, so the layouts are checked against in-memory datasets served by a stand-in
for ``datasets.load_dataset``; the offline error is checked for real, in a child process with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from sr3_env import DataError, DatasetNotFoundError, SplitNotFoundError, available_splits, load_dataset
from conftest import TINY_CORPUS, TINY_EXPECTED, TINY_QRELS, TINY_QUERIES, write_beir


def _qrels(rows):
    return datasets.Dataset.from_list([{"query-id": q, "corpus-id": d, "score": s} for q, d, s in rows])


def _serve(monkeypatch, repos):
    """Answer `datasets.get_dataset_config_names` and `datasets.load_dataset` from ``repos``:
    ``{repo: {config: DatasetDict}}`` (config ``None`` for a repo's only one)."""
    def config_names(repo, *args, **kwargs):
        if repo not in repos:
            raise datasets.exceptions.DatasetNotFoundError(f"Dataset '{repo}' doesn't exist on the Hub")
        return [name for name in repos[repo] if name is not None] or ["default"]

    def load(repo, name=None, *args, **kwargs):
        configs = repos[repo]
        return configs[name if name in configs else None]

    monkeypatch.setattr(datasets, "get_dataset_config_names", config_names)
    monkeypatch.setattr(datasets, "load_dataset", load)


def _corpus_and_queries():
    return {"corpus": datasets.DatasetDict({"corpus": datasets.Dataset.from_list(TINY_CORPUS)}),
            "queries": datasets.DatasetDict({"queries": datasets.Dataset.from_list(TINY_QUERIES)})}


def test_a_beir_hub_dataset_loads_with_its_separate_qrels_and_validation_as_dev(monkeypatch):
    qrels = datasets.DatasetDict({"test": _qrels(TINY_QRELS), "validation": _qrels([("q5", "d8", 1)])})
    _serve(monkeypatch, {"acme/tiny": _corpus_and_queries(), "acme/tiny-qrels": {None: qrels}})

    data = load_dataset("acme/tiny", split="test")
    assert data.name == "acme/tiny" and len(data.doc_ids) == TINY_EXPECTED["num_docs"]
    assert data.query_ids == TINY_EXPECTED["query_ids"] and data.qrels == TINY_EXPECTED["qrels"]
    assert available_splits("acme/tiny") == ["dev", "test"]
    assert load_dataset("acme/tiny", split="dev").qrels == {"q5": {"d8": 1}}
    with pytest.raises(SplitNotFoundError, match="Splits available: \\['dev', 'test'\\]"):
        load_dataset("acme/tiny", split="train")


def test_an_mteb_hub_dataset_loads_with_qrels_in_its_default_config(monkeypatch):
    repo = {**_corpus_and_queries(), "default": datasets.DatasetDict({"test": _qrels(TINY_QRELS)})}
    _serve(monkeypatch, {"acme/tiny": repo})
    assert load_dataset("acme/tiny").qrels == TINY_EXPECTED["qrels"]


def test_a_hub_dataset_without_beir_configs_is_refused_with_what_it_has(monkeypatch):
    _serve(monkeypatch, {"acme/chat": {"default": datasets.DatasetDict({"train": _qrels(TINY_QRELS)})}})
    with pytest.raises(DataError, match="no 'corpus' or 'queries' config \\(it has \\['default'\\]\\)"):
        load_dataset("acme/chat")


def test_an_unknown_hub_id_is_a_dataset_not_found(monkeypatch):
    _serve(monkeypatch, {})
    with pytest.raises(DatasetNotFoundError, match="No dataset 'acme/nothing'"):
        load_dataset("acme/nothing")


def test_a_local_folder_wins_over_a_hub_id_of_the_same_name(tmp_path, monkeypatch):
    _serve(monkeypatch, {})  # any hub call would fail
    write_beir(tmp_path / "acme" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert load_dataset("acme/tiny").query_ids == TINY_EXPECTED["query_ids"]
    assert available_splits("acme/tiny") == ["test"]


def test_a_missing_folder_inside_a_local_folder_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    _serve(monkeypatch, {})  # any hub call would fail
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="No dataset 'data/missing'.*BEIR folder"):
        load_dataset("data/missing")


def test_an_unreachable_hub_names_the_local_folder_alternative(monkeypatch):
    def unreachable(repo, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{repo}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "get_dataset_config_names", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DatasetNotFoundError, match="it did not answer.*Pass a local folder instead: a BEIR folder"):
        load_dataset("BeIR/scifact")


def test_offline_a_hub_id_raises_the_error_that_names_the_local_folder_alternative(tmp_path):
    """For real: ``datasets`` in offline mode, with an empty cache, in a child process (the hub libraries read
    ``HF_HUB_OFFLINE`` when they are imported)."""
    code = ("from sr3_env import load_dataset\n"
            "try:\n    load_dataset('BeIR/scifact', split='test')\n"
            "except FileNotFoundError as error:\n    print(type(error).__name__, error)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path).stdout
    assert out.startswith("DatasetNotFoundError 'BeIR/scifact' is read as a Hugging Face hub dataset id"), out
    assert "HF_HUB_OFFLINE is set" in out and "Pass a local folder instead" in out and "docs/data.md" in out


def test_the_docs_recipe_saves_a_hub_dataset_as_a_folder_that_loads_offline(tmp_path, monkeypatch):
    """docs/data.md's save_to_disk recipe, run as written against the stand-in hub; the folder then loads
    with no hub call, its ``validation`` split as ``dev``."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    recipe = next(block for block in re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M)
                  if "save_to_disk" in block)
    qrels = datasets.DatasetDict({"test": _qrels(TINY_QRELS), "validation": _qrels([("q5", "d8", 1)])})
    _serve(monkeypatch, {"BeIR/scifact": _corpus_and_queries(), "BeIR/scifact-qrels": {None: qrels}})
    monkeypatch.chdir(tmp_path)
    exec(compile(recipe, "docs/data.md", "exec"), {})  # noqa: S102 - the page's own code

    _serve(monkeypatch, {})  # offline from here on
    assert load_dataset("scifact", split="test").qrels == TINY_EXPECTED["qrels"]
    assert available_splits("scifact") == ["dev", "test"]
    assert load_dataset("scifact", split="dev").qrels == {"q5": {"d8": 1}}
