"""Training on a weighted mixture of datasets: the mixture's ids, shares and seeds (`sr3_env.mixture`), the
``--dataset`` option (one spec exactly as before, several with weights, bad ones refused with the fix), and
short `train_sft` / `train_rl` runs on a mixture of two tiny datasets."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from conftest import write_beir

from sr3_agent.cli import COMMANDS, build_parser
from sr3_agent.config import ConfigError, RLConfig, SFTConfig, TrainConfig, config_from_args
from sr3_agent.recipes import read_config_file
from sr3_agent.training.parts import training_data
from sr3_agent.training.train_command import recipe_note, stage_configs
from sr3_env import load_dataset, load_mixture, mix_datasets, mixture_source
from sr3_env.mixture import allocate


def _toy_folder(root: Path, name: str, size: int = 12) -> Path:
    """A BEIR folder of ``size`` documents and queries (query i -> document i) with train and test qrels."""
    corpus = [{"_id": f"d{i}", "title": f"{name} {i}", "text": f"{name} fact number {i} about topic {i * 7 % 13}"}
              for i in range(size)]
    queries = [{"_id": f"q{i}", "text": f"which {name} fact is about topic {i * 7 % 13}"} for i in range(size)]
    train = [(f"q{i}", f"d{i}", 1) for i in range(0, size, 1) if i % 4]
    test = [(f"q{i}", f"d{i}", 1) for i in range(0, size, 4)]
    return write_beir(root / name, corpus=corpus, queries=queries, qrels={"train": train, "test": test})


@pytest.fixture
def toy_folders(tmp_path):
    return _toy_folder(tmp_path, "alpha", 16), _toy_folder(tmp_path, "beta", 12)


def _sources(ids) -> Counter:
    return Counter(mixture_source(i) for i in ids)


# -- the mixture ----------------------------------------------------------------------------------

def test_ids_are_prefixed_and_qrels_point_to_the_same_documents(toy_folders):
    alpha, beta = (load_dataset(folder, split="train") for folder in toy_folders)
    mixed = mix_datasets([alpha, beta], [1, 1])
    assert len(mixed.doc_ids) == len(alpha.doc_ids) + len(beta.doc_ids) == len(set(mixed.doc_ids))
    assert all(i.startswith(("alpha/", "beta/")) for i in mixed.doc_ids + mixed.query_ids)
    originals = {"alpha": alpha, "beta": beta}
    for query_id in mixed.query_ids:
        source, _, original = query_id.partition("/")
        part = originals[source]
        assert mixed.query_text(query_id) == part.query_text(original)
        for doc_id, grade in mixed.relevant(query_id).items():
            assert mixture_source(doc_id) == source and part.qrels[original][doc_id.partition("/")[2]] == grade
            assert mixed.documents[mixed.doc_row[doc_id]] == part.documents[part.doc_row[doc_id.partition("/")[2]]]
    rows, _ = mixed.relevant_rows(mixed.query_ids[0])  # the invariants of RetrievalDataset hold
    assert mixed.doc_ids[rows[0]] in mixed.qrels[mixed.query_ids[0]]


def test_shares_follow_the_weights_and_the_draw_is_seeded(toy_folders):
    alpha, beta = (load_dataset(folder, split="train") for folder in toy_folders)  # 12 and 9 training queries
    mixed = mix_datasets([alpha, beta], [3, 1], num_queries=8, num_docs=12, seed=5)
    assert _sources(mixed.query_ids) == {"alpha": 6, "beta": 2}
    docs = _sources(mixed.doc_ids)
    assert docs["alpha"] >= 6 and docs["beta"] >= 2  # each keeps its queries' documents, so the index holds both
    again = mix_datasets([alpha, beta], [3, 1], num_queries=8, num_docs=12, seed=5)
    assert again.query_ids == mixed.query_ids and again.fingerprint() == mixed.fingerprint()
    others = {tuple(mix_datasets([alpha, beta], [3, 1], num_queries=8, num_docs=12, seed=s).query_ids) for s in range(4)}
    assert len(others) > 1
    whole = mix_datasets([alpha, beta], [3, 1])  # as many as the weights allow: all 12 of alpha, 4 of beta
    assert _sources(whole.query_ids) == {"alpha": 12, "beta": 4}


def test_more_queries_than_the_weights_allow_are_capped_with_a_warning(toy_folders, caplog):
    alpha, beta = (load_dataset(folder, split="train") for folder in toy_folders)
    with caplog.at_level(logging.WARNING):
        mixed = mix_datasets([alpha, beta], [1, 1], num_queries=100)
    assert _sources(mixed.query_ids) == {"alpha": 9, "beta": 9}
    assert "beta has 9 queries" in caplog.text


def test_allocation_sums_to_the_total_by_largest_remainder():
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(7, [0.5, 0.25, 0.25]) == [3, 2, 2]  # 3.5, 1.75, 1.75: the largest remainders round up
    assert sum(allocate(1000, [0.3, 0.3, 0.4])) == 1000


def test_a_share_of_no_query_is_refused(toy_folders):
    from sr3_env import DataError

    alpha, beta = (load_dataset(folder, split="train") for folder in toy_folders)
    with pytest.raises(DataError, match="raise num_queries or its weight"):
        mix_datasets([alpha, beta], [10, 1], num_queries=3)


def test_a_single_dataset_is_the_old_dataset_to_the_bit(toy_folders):
    old = load_dataset("semanlink").subset(num_queries=20, num_docs=50, seed=3)  # the code before mixtures
    for spec in ("semanlink", ["semanlink"], "semanlink:2"):
        config = SFTConfig(dataset=spec, split="test", num_queries=20, corpus_docs=50, seed=3, batch_size=8)
        new = training_data(config)
        assert new.fingerprint() == old.fingerprint() and new.query_ids == old.query_ids and new.qrels == old.qrels
    assert SFTConfig(dataset=["semanlink"]).dataset == "semanlink"  # a list of one is the same setting
    assert load_mixture(str(toy_folders[0]), "train").fingerprint() == load_dataset(toy_folders[0], "train").fingerprint()


# -- the option -----------------------------------------------------------------------------------

def _parsed(argv: list[str]):
    args = build_parser().parse_args(argv)
    return config_from_args(COMMANDS[args.command][0], args)


def test_the_option_takes_one_spec_or_several():
    assert _parsed(["sft"]) == SFTConfig() and SFTConfig().dataset == "wordnet-revdict"
    assert _parsed(["sft", "--dataset", "semanlink"]).dataset == "semanlink"
    assert _parsed(["rl", "--dataset", "a:3", "b:1"]).dataset == ["a:3", "b:1"]
    assert _parsed(["train", "--dataset", "a:3", "b", "--rl-steps", "2"]).dataset == ["a:3", "b"]


def test_help_shows_the_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sft", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dataset DATASET [DATASET ...]" in text and "NAME:WEIGHT" in text


def test_config_files_take_a_string_or_a_list(tmp_path):
    path = tmp_path / "mix.toml"
    path.write_text('dataset = ["wordnet-revdict:3", "path/to/beir:1"]\n')
    assert read_config_file(str(path), SFTConfig) == {"dataset": ["wordnet-revdict:3", "path/to/beir:1"]}
    path.write_text('dataset = "semanlink"\n')
    assert read_config_file(str(path), TrainConfig) == {"dataset": "semanlink"}
    path.write_text("dataset = [1, 2]\n")
    with pytest.raises(ConfigError, match="must be str"):
        read_config_file(str(path), RLConfig)


@pytest.mark.parametrize("spec, message", [
    ("a:0", "must be a number > 0"),
    ("a:-1", "must be a number > 0"),
    ("a:nan", "must be a number > 0"),
    ("a:x", "is not a number"),
    ("a:1,b:2", "separate words"),
    (":2", "no name before"),
    ("", "empty"),
    ([], "No dataset given"),
    (["a:1", "a:2"], "give each dataset once"),
    (["x/data", "y/data:2"], "both named 'data'"),
])
@pytest.mark.parametrize("cls", [SFTConfig, RLConfig, TrainConfig])
def test_bad_specs_say_how_to_fix_them(cls, spec, message):
    with pytest.raises(ConfigError, match=message) as raised:
        cls(dataset=spec)
    assert "NAME:WEIGHT" in str(raised.value) or "once" in str(raised.value) or "named" in str(raised.value)


def test_sr3_train_evaluates_each_dataset_of_the_mixture_on_its_own():
    config = TrainConfig(dataset=["wordnet-revdict:3", "path/to/beir:1"], output_dir="out")
    stages, evaluation, _ = stage_configs(config)
    assert all(stage.dataset == ["wordnet-revdict:3", "path/to/beir:1"] for _, stage in stages)
    assert evaluation.datasets == ["wordnet-revdict", "path/to/beir"]
    note = recipe_note(config)
    assert "--dataset wordnet-revdict:3 path/to/beir:1 --num-queries" in note
    assert "--datasets wordnet-revdict path/to/beir --turns 2" in note


# -- training on a mixture ------------------------------------------------------------------------

def test_sft_trains_on_a_mixture(tiny_embedder, toy_folders, tmp_path):
    from sr3_agent.training.sft import train_sft

    config = SFTConfig(dataset=[f"{toy_folders[0]}:3", f"{toy_folders[1]}:1"], num_queries=8, corpus_docs=12, steps=2,
                       batch_size=4, mine_top_k=4, hard_negatives=1, reasoning_fraction=0.0, learning_rate=1e-3,
                       save_every=2, output_dir=str(tmp_path / "sft"))
    data = training_data(config)
    assert _sources(data.query_ids) == {"alpha": 6, "beta": 2} and set(_sources(data.doc_ids)) == {"alpha", "beta"}
    trained = train_sft(config, embedder=tiny_embedder, progress=False)
    assert trained.version == 2 and (tmp_path / "sft" / "final" / "config.json").is_file()


def test_rl_trains_on_a_mixture_and_evaluates_on_its_dev_splits(tiny_embedder, toy_folders, tmp_path):
    from sr3_agent.training.parts import training_data
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.selection import dev_set

    config = RLConfig(dataset=[str(toy_folders[0]), f"{toy_folders[1]}:1"], num_queries=None, corpus_docs=10, steps=2,
                      queries_per_step=2, group_size=2, reasoning_tokens=4, top_k=4, eval_every=2, eval_queries=4,
                      eval_docs=8, dev_fraction=0.25, learning_rate=1e-3, output_dir=str(tmp_path / "rl"))
    dev = dev_set(config)  # carved off each dataset's train split, mixed as in training
    assert _sources(dev.query_ids) == {"alpha": 2, "beta": 2} and dev.split == "dev"
    assert not set(dev.query_ids) & set(training_data(config).query_ids)
    trained = train_rl(config, policy=tiny_embedder, progress=False)
    assert (tmp_path / "rl" / "final" / "config.json").is_file() and (tmp_path / "rl" / "selection.json").is_file()
    assert trained.selection["step"] in (0, 2) and trained.version == 2 + (trained.selection["step"] != 2)


def test_the_comparison_table_pairs_rows_within_each_dataset():
    from sr3_agent.training.train_command import comparison_table

    rows = [{"system": "A (direct)", "dataset": "x", "per_query_ndcg@10": {"q1": 0.5, "q2": 0.5}},
            {"system": "A (fused)", "dataset": "x", "per_query_ndcg@10": {"q1": 0.7, "q2": 0.7}},
            {"system": "A (direct)", "dataset": "y", "per_query_ndcg@10": {"q1": 0.5, "q2": 0.5}},
            {"system": "A (fused)", "dataset": "y", "per_query_ndcg@10": {"q1": 0.4, "q2": 0.4}}]
    table = comparison_table(rows, [("A (direct)", "A (fused)")])
    assert "| A (fused) vs A (direct) on x | +0.200 |" in table and "| A (fused) vs A (direct) on y | -0.100 |" in table
    assert "on x" not in comparison_table(rows[:2], [("A (direct)", "A (fused)")])  # one dataset: as before
