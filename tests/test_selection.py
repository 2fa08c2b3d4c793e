"""Evaluation on the dev split during training, selection of the best checkpoint, the anchor of the direct
embedding, the recorded way to serve, and the rule that no training path reads a test split."""

import copy
import json

import numpy as np
import pytest
import torch

import sr3_env.data
from sr3_agent.config import ConfigError, RLConfig, SFTConfig
from sr3_agent.training.losses import anchor_loss
from sr3_agent.training.selection import DevEvaluator, DevScores, Selection, mean_interval, stage_ways
from sr3_env import DataError, load_dataset
from sr3_env.data import carve_dev


@pytest.fixture(scope="module")
def dev():
    return load_dataset("python-docstrings", split="dev").subset(num_queries=6, num_docs=24, seed=0)


def _scores(step, **ndcg):
    return DevScores(step, ndcg, {way: (v - 0.1, v + 0.1) for way, v in ndcg.items()}, queries=6)


# -- pure pieces ----------------------------------------------------------------------------------

def test_carved_dev_is_disjoint_from_train_the_same_for_any_order_and_keeps_the_corpus():
    train = load_dataset("python-docstrings", split="train")
    kept, carved = carve_dev(train, 0.1)
    assert len(carved.query_ids) == round(0.1 * len(train.query_ids)) and carved.split == "dev"
    assert not set(kept.query_ids) & set(carved.query_ids)
    assert set(kept.query_ids) | set(carved.query_ids) == set(train.query_ids)
    assert carved.doc_ids == train.doc_ids  # the whole corpus: a dev query's documents are all there
    shuffled = train.subset(query_ids=list(reversed(train.query_ids)))
    assert set(carve_dev(shuffled, 0.1)[1].query_ids) == set(carved.query_ids)  # by id, not by position
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        carve_dev(train, 1.0)
    with pytest.raises(DataError, match="cannot be split"):
        carve_dev(train.subset(num_queries=1), 0.5)


def test_load_dataset_carves_dev_only_where_there_is_none():
    own = load_dataset("wordnet-revdict", split="dev", dev_fraction=0.05)  # has dev qrels: they are used
    assert len(own.query_ids) == 500
    carved = load_dataset("python-docstrings", split="train", dev_fraction=0.0)
    assert len(carved.query_ids) == 1204


def test_mean_interval_contains_the_mean_and_narrows_with_more_queries():
    rng = np.random.default_rng(0)
    few, many = rng.random(20), rng.random(2000)
    for values in (few, many):
        low, high = mean_interval(values)
        assert low < values.mean() < high
    assert np.subtract(*mean_interval(many)[::-1]) < np.subtract(*mean_interval(few)[::-1])


def test_scores_name_their_best_way_and_select_by_a_named_metric():
    scores = _scores(3, direct=0.40, reasoning=0.35, fused=0.42)
    assert scores.best_way() == "fused" and scores.metric("best") == 0.42 and scores.metric("direct") == 0.40
    assert _scores(1, direct=0.4, fused=0.4).best_way() == "direct"  # a tie serves the cheaper way
    with pytest.raises(ConfigError, match="evaluates"):
        _scores(0, direct=0.4).metric("auto")
    assert stage_ways(reasoning=False) == ("direct",)
    assert stage_ways(reasoning=True, auto=True) == ("direct", "reasoning", "fused", "auto")


def test_anchor_is_zero_at_the_reference_and_pulls_towards_it():
    reference = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    assert anchor_loss(reference.clone(), reference).item() == pytest.approx(0.0, abs=1e-6)
    moved = torch.nn.functional.normalize(reference + 0.5 * torch.randn(5, 8), dim=-1).requires_grad_(True)
    loss = anchor_loss(moved, reference)
    loss.backward()
    stepped = moved.detach() - 0.1 * moved.grad  # one gradient step brings every row closer to its reference
    before = (moved.detach() * reference).sum(-1)
    after = torch.nn.functional.cosine_similarity(stepped, reference)
    assert loss.item() > 0 and bool((after > before).all())
    with pytest.raises(ValueError, match="shapes must match"):
        anchor_loss(moved, reference[:3])


# -- the evaluator and the selection --------------------------------------------------------------

def test_the_evaluator_never_reads_a_test_split(dev):
    with pytest.raises(ValueError, match="never the test split"):
        DevEvaluator(load_dataset("semanlink").subset(num_queries=2, num_docs=10), ("direct",))


def test_evaluator_scores_each_way_and_leaves_the_model_as_it_was(tiny_embedder, dev):
    tiny_embedder.model.train()
    scores = DevEvaluator(dev, ("direct", "reasoning", "fused"), reasoning_tokens=4)(tiny_embedder, 7)
    assert scores.step == 7 and set(scores.ndcg) == {"direct", "reasoning", "fused"} and scores.queries == 6
    assert all(0 <= v <= 1 and scores.intervals[w][0] <= v <= scores.intervals[w][1] for w, v in scores.ndcg.items())
    assert 0 <= scores.embed_token_rate <= 1 and tiny_embedder.model.training


def test_selection_keeps_the_best_step_restores_it_and_survives_a_restart(tiny_embedder, tmp_path):
    model = tiny_embedder.model
    start = copy.deepcopy(model.state_dict())
    selection = Selection(tmp_path, "direct")
    assert selection.offer(_scores(0, direct=0.5), tiny_embedder)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    assert not selection.offer(_scores(4, direct=0.5), tiny_embedder)  # a tie keeps the earlier step
    assert not selection.offer(_scores(8, direct=0.3), tiny_embedder)
    again = Selection.load(tmp_path, "direct")  # a resumed run knows what was evaluated
    assert again.best.step == 0 and [s.step for s in again.history] == [0, 4, 8]
    reason = again.restore(tiny_embedder)
    assert "kept step 0" in reason and "step 8 0.300" in reason
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, start[name], msg=name)
    record = again.record()
    assert record["query_way"] == "direct" and record["step"] == 0 and record["dev_ndcg@10"] == 0.5


# -- the stages -----------------------------------------------------------------------------------

def test_sft_with_the_anchor_selects_on_dev_and_records_the_way(tiny_embedder, dev, tmp_path):
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.training.sft import train_sft
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = load_dataset("python-docstrings", split="train").subset(num_queries=8, num_docs=30, seed=0)
    config = SFTConfig(steps=2, batch_size=4, reasoning_fraction=0.5, reasoning_tokens=4, anchor_weight=1.0,
                       eval_every=1, learning_rate=1e-3, output_dir=str(tmp_path / "sft"), num_queries=None, corpus_docs=None)
    trained = train_sft(config, embedder=tiny_embedder, dataset=train, dev=dev, progress=False)
    tags = set(EventAccumulator(str(tmp_path / "sft" / "tensorboard")).Reload().Tags()["scalars"])
    assert {"losses/anchor", "dev/ndcg@10_direct", "dev/ndcg@10_reasoning", "dev/ndcg@10_fused"} <= tags
    history = json.loads((tmp_path / "sft" / "selection.json").read_text())["history"]
    assert [h["step"] for h in history] == [0, 1, 2]
    best = max(history, key=lambda h: (max(h["ndcg"].values()), -h["step"]))
    assert trained.selection["step"] == best["step"] and trained.selection["query_way"] in ("direct", "reasoning", "fused")
    loaded = ReasoningEmbedder.from_pretrained(tmp_path / "sft" / "final", device="cpu")
    assert json.loads(json.dumps(trained.selection)) == loaded.selection and loaded.query_way == trained.selection["query_way"]
    texts = list(dev.query_texts[:2])
    way = loaded.query_way  # encode_queries' default is the recorded way
    expected = loaded.encode_queries(texts, reasoning=way != "direct", fused=way == "fused", max_new_tokens=8)
    np.testing.assert_allclose(loaded.encode_queries(texts, max_new_tokens=8), expected, atol=1e-5)


def test_rl_with_the_anchor_trains_and_logs_it(tiny_embedder, dev, tmp_path):
    from sr3_agent.training.rl import train_rl

    train = load_dataset("python-docstrings", split="train").subset(num_queries=8, num_docs=30, seed=0)
    config = RLConfig(steps=2, queries_per_step=2, group_size=2, reasoning_tokens=4, top_k=5, learning_rate=1e-3,
                      anchor_weight=1.0, eval_every=0, output_dir=str(tmp_path / "rl"), num_queries=None, corpus_docs=None)
    trained = train_rl(config, policy=tiny_embedder, dataset=train, progress=False)
    assert trained.version == 2 and trained.selection is None  # no dev evaluation: final/ is the last step


def test_no_training_stage_reads_a_test_split(tiny_embedder, tmp_path, monkeypatch):
    """SFT and RL, configured from a bundled dataset as sr3 train runs them, read train and dev, never test."""
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft

    read = []
    original = sr3_env.data._load
    monkeypatch.setattr(sr3_env.data, "_load", lambda name, split: read.append(split) or original(name, split))
    shared = dict(dataset="python-docstrings", num_queries=8, corpus_docs=30, eval_every=1, eval_queries=3, eval_docs=12,
                  steps=1, learning_rate=1e-3, reasoning_tokens=4)
    train_sft(SFTConfig(batch_size=4, output_dir=str(tmp_path / "sft"), **shared), embedder=copy.deepcopy(tiny_embedder),
              progress=False)
    train_rl(RLConfig(queries_per_step=2, group_size=2, top_k=5, output_dir=str(tmp_path / "rl"), **shared),
             policy=copy.deepcopy(tiny_embedder), progress=False)
    assert "dev" in read and "train" in read and "test" not in read


def test_the_next_stage_starts_from_the_scores_of_the_model_it_starts_from(tiny_embedder, dev, tmp_path, monkeypatch):
    """A stage's starting model was scored by the stage that made it, on the same dev set: step 0 is not evaluated
    again (it costs a generation pass per way), but it is a candidate with those scores."""
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.training.sft import train_sft

    train = load_dataset("python-docstrings", split="train").subset(num_queries=8, num_docs=30, seed=0)
    settings = dict(steps=1, batch_size=4, reasoning_fraction=0.5, reasoning_tokens=4, eval_every=1, learning_rate=1e-3,
                    num_queries=None, corpus_docs=None)
    train_sft(SFTConfig(output_dir=str(tmp_path / "a"), **settings), embedder=tiny_embedder, dataset=train, dev=dev,
              progress=False)
    first = json.loads((tmp_path / "a" / "selection.json").read_text())
    best = next(h for h in first["history"] if h["step"] == first["best_step"])
    evaluated = []
    monkeypatch.setattr(DevEvaluator, "__call__", lambda self, embedder, step: evaluated.append(step) or _scores(
        step, direct=0.0, reasoning=0.0, fused=0.0))
    start = ReasoningEmbedder.from_pretrained(tmp_path / "a" / "final", device="cpu")
    train_sft(SFTConfig(output_dir=str(tmp_path / "b"), **settings), embedder=start, dataset=train, dev=dev, progress=False)
    second = json.loads((tmp_path / "b" / "selection.json").read_text())
    assert evaluated == [1]  # step 0 came from the first stage's record
    assert second["history"][0]["ndcg"] == best["ndcg"] and second["best_step"] == 0  # 0.0 at step 1 does not beat it
    other = load_dataset("python-docstrings", split="dev").subset(num_queries=5, num_docs=24, seed=1)
    evaluated.clear()
    train_sft(SFTConfig(output_dir=str(tmp_path / "c"), **settings), embedder=ReasoningEmbedder.from_pretrained(
        tmp_path / "a" / "final", device="cpu"), dataset=train, dev=other, progress=False)
    assert evaluated == [0, 1]  # another dev set: the starting model is scored again


def test_rl_does_not_start_from_a_model_that_never_writes_the_token(tmp_path):
    from sr3_agent.training.train_command import FormatNotLearned, check_format

    def model(rate):
        folder = tmp_path / f"rate-{rate}" / "final"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sr3_embedder.json").write_text(json.dumps({"selection": {"scores": {"embed_token_rate": rate}}}))
        return folder

    check_format(model(0.96), 0.9)
    check_format(model(0.0), 0.0)  # --min-token-rate 0: no check
    check_format(tmp_path, 0.9)  # nothing recorded: nothing to check
    with pytest.raises(FormatNotLearned, match=r"only 0% .*--rs-steps 16"):
        check_format(model(0.0), 0.9)


def test_a_checkpoint_that_writes_the_format_comes_first(tiny_embedder, tmp_path):
    selection = Selection(tmp_path, "reasoning", min_token_rate=0.9)
    never = DevScores(0, {"reasoning": 0.45}, {"reasoning": (0.4, 0.5)}, 6, embed_token_rate=0.0)
    writes = DevScores(8, {"reasoning": 0.43}, {"reasoning": (0.4, 0.5)}, 6, embed_token_rate=0.96)
    assert selection.offer(never, tiny_embedder) and selection.offer(writes, tiny_embedder)
    assert selection.best.step == 8 and "token rate 0.96" in selection.reason()
    assert Selection(tmp_path, "reasoning").rank(never) > Selection(tmp_path, "reasoning").rank(writes)  # no minimum


def test_when_no_checkpoint_writes_the_format_the_closest_to_it_is_kept(tiny_embedder, tmp_path):
    """A base model's rejection sampling (Gemma-3-270m: token rate 0.00, 0.11, 0.78, 0.77 over its steps): the kept
    model is the one nearest the format, not the step-0 model that never writes the token but reasons best."""
    selection = Selection(tmp_path, "reasoning", min_token_rate=0.9)
    for step, reasoning, rate in ((0, 0.58, 0.0), (8, 0.44, 0.11), (16, 0.47, 0.78), (24, 0.59, 0.77)):
        selection.offer(DevScores(step, {"reasoning": reasoning}, {"reasoning": (0.4, 0.6)}, 6,
                                  embed_token_rate=rate), tiny_embedder)
    assert selection.best.step == 16 and selection.best.embed_token_rate == 0.78
    assert selection.reason().startswith("kept step 16: no step reached token rate 0.90; the closest, 0.78, with "
                                         "dev nDCG@10 (reasoning) 0.470 of 4 evaluations")
    tied = DevScores(32, {"reasoning": 0.50}, {"reasoning": (0.4, 0.6)}, 6, embed_token_rate=0.78)
    assert selection.offer(tied, tiny_embedder) and selection.best.step == 32  # same rate: the metric decides
