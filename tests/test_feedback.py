"""Multi-turn retrieval for the agent: the later turns' texts, `sr3 eval --turns` and `sr3 rl --turns 2`."""

from __future__ import annotations

import numpy as np
import pytest

from sr3_agent.evaluation.eval_command import run_eval
from sr3_agent.config import ConfigError, EvalConfig, RLConfig
from sr3_agent.model.embedder import fuse
from sr3_agent.evaluation.evaluate import dense_run, per_query_metrics
from sr3_agent.evaluation.feedback import HEADER, MAX_DOC_TOKENS, feedback_room, feedback_text, feedback_texts, refine_turns, shown_documents
from sr3_agent.training.rl import first_turn, train_rl
from sr3_env import load_dataset
from sr3_env.refine_vector import RetrievalRefineVectorEnv


def _tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_feedback_text_lists_the_documents_best_first_on_one_line_each(tiny_embedder):
    tokenizer = tiny_embedder.tokenizer
    assert feedback_text("a cat", [], tokenizer, room=100) == "a cat"
    text = feedback_text("a cat", ["Cats\nsmall felines", "Dogs\nloyal  animals"], tokenizer, room=100)
    assert text == f"a cat\n\n{HEADER}\n1. Cats small felines\n2. Dogs loyal animals"


def test_feedback_text_cuts_each_document_to_an_equal_share_of_the_room(tiny_embedder):
    tokenizer = tiny_embedder.tokenizer
    long = " ".join(f"word{i}" for i in range(200))
    for room in (40, 80, 400):
        text = feedback_text("what is a cat", [long, long, "short one"], tokenizer, room=room)
        lines = text.split("\n")
        assert lines[-3].startswith("1. word0") and lines[-3].endswith(" ...") and lines[-1] == "3. short one"
        assert _tokens(tokenizer, lines[-3]) <= MAX_DOC_TOKENS + 4  # "1. " and " ..." around the cut text
        if room <= 80:  # the whole text fits the room (within the tokens that joining lines may merge)
            assert _tokens(tokenizer, text) <= room + 3


def test_a_feedback_prompt_fits_the_embedders_max_length(tiny_embedder):
    long = " ".join(f"word{i}" for i in range(300))
    texts = feedback_texts(tiny_embedder, ["what is a cat"], [(long, long, long)])
    prompt = tiny_embedder.prompt_ids(texts, tiny_embedder.prompts.reasoning)[0]
    assert len(prompt) <= tiny_embedder.max_length
    assert "3. word0" in tiny_embedder.tokenizer.decode(prompt)  # the last document was cut, not dropped
    assert feedback_room(tiny_embedder) < tiny_embedder.max_length


def test_shown_documents_are_the_top_k_texts_in_rank_order(tiny_beir):
    dataset = load_dataset(str(tiny_beir))
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((len(dataset.doc_ids), 8)).astype(np.float32)
    queries = rng.standard_normal((len(dataset.query_ids), 8)).astype(np.float32)
    shown = shown_documents(dataset, queries, docs, k=3)
    for q, texts in enumerate(shown):
        best = np.argsort(-(docs @ queries[q]))[:3]
        assert texts == tuple(dataset.documents[row] for row in best)


def test_each_later_turn_reads_what_the_previous_one_retrieved(tiny_embedder, tiny_beir):
    dataset = load_dataset(str(tiny_beir))
    docs = tiny_embedder.encode_documents(dataset.documents)
    first = docs[[5, 7, 2]]  # each query's turn-1 vector is a document's: that document comes back first
    turns = refine_turns(tiny_embedder, dataset, docs, first, turns=3, feedback_k=2, max_new_tokens=3)
    assert len(turns) == 2
    for q, row in enumerate([5, 7, 2]):
        text = turns[0].texts[q]
        assert text.startswith(dataset.query_texts[q]) and f"\n1. {' '.join(dataset.documents[row].split())}" in text
    # turn 3 reads turn 2's results, i.e. the top documents of turn 2's vectors
    expected = feedback_texts(tiny_embedder, dataset.query_texts, shown_documents(dataset, turns[0].vectors, docs, 2))
    assert turns[1].texts == expected
    for turn in turns:
        assert turn.vectors.shape == first.shape and 0 <= turn.embed_token_rate <= 1 and 0 < turn.reasoning_length <= 3
        np.testing.assert_allclose(np.linalg.norm(turn.vectors, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="feedback_k"):
        refine_turns(tiny_embedder, dataset, docs, first, turns=2, feedback_k=0, max_new_tokens=3)


def test_eval_with_turns_adds_a_row_per_later_turn(tiny_embedder, tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    config = EvalConfig(datasets=[str(tiny_beir)], num_queries=None, corpus_docs=None, reasoning_tokens=3, baselines=False,
                        reasoning=False, turns=3, feedback_k=2)
    rows = run_eval(config, embedders=[("tiny", tiny_embedder)])
    assert [r["system"] for r in rows] == ["tiny (direct)", "tiny (turn 2)", "tiny (turn 3)"]
    for row in rows[1:]:
        assert 0 <= row["embed_token_rate"] <= 1 and 0 < row["reasoning_length"] <= 3
        assert len(row["per_query_ndcg@10"]) == 3
    assert tiny_embedder.reasoning_rollouts == 3  # the counters were reset for turn 3: its 3 reasonings
    assert len(list((tmp_path / "cache" / "eval").glob("*.npy"))) == 1  # the documents encoded once for all turns
    with pytest.raises(ConfigError, match="turns"):
        EvalConfig(turns=0)


def test_eval_with_reasoning_adds_a_fused_row_per_later_turn(tiny_embedder, tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    config = EvalConfig(datasets=[str(tiny_beir)], num_queries=None, corpus_docs=None, reasoning_tokens=3, baselines=False,
                        turns=2, feedback_k=2)
    rows = run_eval(config, embedders=[("tiny", tiny_embedder)])
    assert [r["system"] for r in rows] == ["tiny (direct)", "tiny (reasoning)", "tiny (fused)", "tiny (turn 2)",
                                           "tiny (turn 2 fused)"]
    # the fused turn is the turn-2 embedding halfway to the direct one, scored as any dense run
    dataset = load_dataset(str(tiny_beir))
    docs = tiny_embedder.encode_documents(dataset.documents)
    direct = tiny_embedder.encode_queries(list(dataset.query_texts))
    turn2 = refine_turns(tiny_embedder, dataset, docs, direct, turns=2, feedback_k=2, max_new_tokens=3)[0]
    expected = per_query_metrics(dense_run(dataset, fuse(direct, turn2.vectors), docs, k=100), dataset.qrels)["ndcg@10"]
    assert rows[4]["per_query_ndcg@10"] == pytest.approx(expected, abs=1e-6)
    assert rows[4]["embed_token_rate"] == rows[3]["embed_token_rate"]


@pytest.fixture
def toy_sets():
    # training queries, and a dev set (the dev split of another bundled dataset: a training run never reads test)
    return (load_dataset("semanlink").subset(num_queries=8, num_docs=30, seed=0),
            load_dataset("python-docstrings", split="dev").subset(num_queries=4, num_docs=20, seed=1))


def test_first_turn_steps_the_direct_embeddings_and_shows_their_results(tiny_embedder, toy_sets):
    data = toy_sets[0]
    ids = [data.query_ids[0]] * 2 + [data.query_ids[1]] * 2
    texts = [data.query_texts[0], data.query_texts[1]]
    envs = [RetrievalRefineVectorEnv(num_envs=4, dataset=data, encoder=tiny_embedder, top_k=5, feedback_k=2)
            for _ in range(2)]
    for env in envs:
        env.reset(options={"query_ids": ids})
    rewards, turn_two = first_turn(tiny_embedder, envs[0], texts, group_size=2)
    # the same turn played by hand: each query's direct embedding, twice
    observations, expected, *_ = envs[1].step(np.repeat(tiny_embedder.encode_queries(texts), 2, axis=0))
    np.testing.assert_allclose(rewards, expected)
    assert turn_two == feedback_texts(tiny_embedder, texts, observations["documents"][::2])
    assert all(text.startswith(query) and "\n1. " in text for text, query in zip(turn_two, texts))


def test_rl_with_two_turns_runs_and_logs_both_turns(tiny_embedder, toy_sets, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = RLConfig(steps=2, queries_per_step=2, group_size=2, reasoning_tokens=4, top_k=5, learning_rate=1e-3, turns=2,
                      feedback_k=2, output_dir=str(tmp_path / "rl"), eval_every=2, num_queries=None, corpus_docs=None)
    trained = train_rl(config, policy=tiny_embedder, dataset=toy_sets[0], dev=toy_sets[1], progress=False)
    assert trained.version == 2 + (trained.selection["step"] != 2)  # + putting back step 0's weights if it was best
    events = EventAccumulator(str(tmp_path / "rl" / "tensorboard")).Reload()
    assert {"charts/turn1_env_reward_mean", "charts/env_reward_mean", "dev/ndcg@10_two-turn"} <= set(events.Tags()["scalars"])
    assert (tmp_path / "rl" / "final" / "config.json").is_file()


@pytest.mark.parametrize("changes, message", [({"turns": 3}, "1 or 2"), ({"feedback_k": 11}, "top_k")])
def test_bad_turn_settings_say_how_to_fix_them(changes, message):
    with pytest.raises(ConfigError, match=message):
        RLConfig(**changes)


def test_sft_queries_that_read_feedback_see_the_documents_their_direct_embedding_retrieves(tiny_embedder, toy_sets):
    from sr3_agent.training.parts import feedback_query_texts
    from sr3_env import LazyIndex

    data = toy_sets[0]
    index = LazyIndex(data.documents, tiny_embedder)
    texts = list(data.query_texts[:3])
    gold = [data.relevant_rows(q) for q in data.query_ids[:3]]
    shown = feedback_query_texts(tiny_embedder, index, data, texts, gold, k=2)
    top = index.search(tiny_embedder.encode_queries(texts), gold, k=2).top_rows
    assert shown == feedback_texts(tiny_embedder, texts, [[data.documents[r] for r in rows] for rows in top])


def test_sft_with_feedback_trains_and_says_how_to_fix_bad_settings(tiny_embedder, toy_sets, tmp_path):
    import copy

    import torch

    from sr3_agent.config import SFTConfig
    from sr3_agent.training.sft import train_sft

    start = copy.deepcopy(tiny_embedder.model.state_dict())
    config = SFTConfig(steps=2, batch_size=4, num_queries=None, corpus_docs=None, mine_top_k=4, reasoning_fraction=1.0,
                       feedback_fraction=1.0, feedback_k=2, reasoning_tokens=4, output_dir=str(tmp_path / "sft"))
    trained = train_sft(config, embedder=tiny_embedder, dataset=toy_sets[0], progress=False)
    assert trained.version == 2 and any(not torch.equal(start[k], v) for k, v in trained.model.state_dict().items())
    with pytest.raises(ConfigError, match="mine_top_k"):
        SFTConfig(feedback_fraction=0.5, feedback_k=9, mine_top_k=8)
    with pytest.raises(ConfigError, match="feedback_fraction"):
        SFTConfig(feedback_fraction=1.5)
