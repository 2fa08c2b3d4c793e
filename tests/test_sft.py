"""SFT: the pure pieces on hand-made inputs, then short runs of the loop on a tiny random-weight model."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from sr3_agent.training.checkpoint import list_checkpoints
from sr3_agent.config import ConfigError, SFTConfig
from sr3_agent.evaluation.evaluate import dense_run, ir_metrics
from sr3_agent.training.sft import (answer_template_loss, batch_query_rows, false_negative_mask, pick_hard_negatives,
                           pick_positives, train_sft)
from sr3_env import load_dataset


def test_batches_are_distinct_and_reproducible():
    rows = batch_query_rows(10, 4, step=3, seed=0)
    assert len(set(rows.tolist())) == 4 and rows.max() < 10
    assert (rows == batch_query_rows(10, 4, step=3, seed=0)).all()
    assert not (rows == batch_query_rows(10, 4, step=4, seed=0)).all()
    assert len(batch_query_rows(3, 8, step=0, seed=0)) == 3  # never more than there are


def test_positives_are_relevant():
    gold = [np.array([4, 7]), np.array([1])]
    picked = pick_positives(gold, np.random.default_rng(0))
    assert picked[0] in (4, 7) and picked[1] == 1


def test_hard_negatives_skip_relevant_rows_and_fill_in():
    top = np.array([[3, 5, 8, 9], [2, 2, 2, 2]])
    gold = [np.array([3, 8]), np.array([2])]
    negatives = pick_hard_negatives(top, gold, count=2, num_docs=20, rng=np.random.default_rng(0))
    assert negatives.shape == (2, 2)
    assert set(negatives[0]) == {5, 9}  # the only non-relevant top rows
    assert 2 not in negatives[1] and len(set(negatives[1])) == 2  # random fill, still non-relevant


def test_false_negative_mask_by_hand():
    gold = [np.array([10]), np.array([10, 11]), np.array([12])]
    columns = np.array([10, 11, 12, 10, 13])  # labels 10, 11, 12, then two negatives
    expected = [[False, False, False, True, False],  # its own document again, as a negative: masked
                [True, False, False, True, False],  # document 10 is relevant to query 1 too
                [False, False, False, False, False]]
    assert false_negative_mask(gold, columns).tolist() == expected


def test_query_sequences_mix_direct_and_reasoning(tiny_embedder):
    from sr3_agent.training.sft import answer_lengths, query_sequences

    texts = ["a cat", "rain"]
    reasonings = [None, [101, 102, 103]]
    sequences, instructions = query_sequences(tiny_embedder, texts, reasonings)
    direct = tiny_embedder.prompt_ids(texts[:1], tiny_embedder.prompts.query)[0]
    assert sequences[0] == direct + [tiny_embedder.embed_token_id]
    reasoning_prompt = tiny_embedder.prompt_ids(texts[1:], tiny_embedder.prompts.reasoning)[0]
    assert sequences[1] == reasoning_prompt + [101, 102, 103, tiny_embedder.embed_token_id]
    assert instructions == [tiny_embedder.prompts.query, tiny_embedder.prompts.reasoning]
    assert answer_lengths(reasonings, learn_reasoning=False) == [1, 1]
    assert answer_lengths(reasonings, learn_reasoning=True) == [1, 4]
    assert answer_lengths(reasonings, learn_reasoning=True, direct=False) == [0, 4]  # the direct row unlabelled


def test_answer_template_labels_only_the_embed_token(tiny_embedder):
    ids, mask = tiny_embedder.direct_batch(["a cat", "a dog"], tiny_embedder.prompts.query)
    hidden = tiny_embedder.hidden_states(ids, mask)
    loss = answer_template_loss(tiny_embedder, hidden, ids)
    logits = tiny_embedder.model.get_output_embeddings()(hidden[:, -2])
    expected = torch.nn.functional.cross_entropy(logits, torch.full((2,), tiny_embedder.embed_token_id))
    torch.testing.assert_close(loss, expected)


def test_answer_loss_labels_a_kept_reasoning_and_the_token(tiny_embedder):
    """Row 0 labels its last 3 tokens (a 2-token reasoning + the token), row 1 only the token: the
    loss is the token's mean cross-entropy over the 2 rows plus the reasoning's over its 2 tokens, by hand."""
    from sr3_agent.training.sft import query_sequences

    sequences, _ = query_sequences(tiny_embedder, ["a cat", "rain"], [[101, 102], None])
    ids, mask = tiny_embedder.pad_left(sequences)
    hidden = tiny_embedder.hidden_states(ids, mask)
    loss = answer_template_loss(tiny_embedder, hidden, ids, [3, 1])
    head = tiny_embedder.model.get_output_embeddings()
    ce = torch.nn.functional.cross_entropy
    token = (ce(head(hidden[0, -2:-1]), ids[0, -1:]) + ce(head(hidden[1, -2:-1]), ids[1, -1:])) / 2
    reasoning = ce(head(hidden[0, -4:-2]), ids[0, -3:-1])
    torch.testing.assert_close(loss, token + reasoning)


def test_a_row_labelled_with_no_tokens_is_left_out_of_the_answer_loss(tiny_embedder):
    """With lm_direct=False a direct row is labelled with 0 tokens: the loss is that of the reasoning row alone, and
    its gradient does not reach the direct row's hidden states; with no row labelled it is an exact zero."""
    from sr3_agent.training.sft import query_sequences

    sequences, _ = query_sequences(tiny_embedder, ["a cat", "rain"], [[101, 102], None])
    ids, mask = tiny_embedder.pad_left(sequences)
    hidden = tiny_embedder.hidden_states(ids, mask).detach().requires_grad_()
    loss = answer_template_loss(tiny_embedder, hidden, ids, [3, 0])
    head = tiny_embedder.model.get_output_embeddings()
    ce = torch.nn.functional.cross_entropy
    expected = ce(head(hidden[0, -2:-1]), ids[0, -1:]) + ce(head(hidden[0, -4:-2]), ids[0, -3:-1])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert hidden.grad[0].abs().sum() > 0 and hidden.grad[1].abs().sum() == 0
    nothing = answer_template_loss(tiny_embedder, hidden, ids, [0, 0])
    assert nothing.item() == 0 and nothing.requires_grad


def test_without_train_head_the_answer_loss_leaves_the_tied_embedding_rows_alone(tiny_embedder):
    """The tiny model ties its input and output embeddings, as SmolLM2 does: with train_head=False the loss has the
    same value, no gradient reaches that matrix (the embed token's row is where embeddings are read), and the
    layers below it still learn."""
    model = tiny_embedder.model
    matrix = model.get_output_embeddings().weight
    assert matrix is model.get_input_embeddings().weight  # tied
    ids, mask = tiny_embedder.direct_batch(["a cat", "a dog"], tiny_embedder.prompts.query)
    losses = {}
    for train_head in (True, False):
        model.zero_grad()
        hidden = tiny_embedder.hidden_states(ids, mask)
        losses[train_head] = answer_template_loss(tiny_embedder, hidden, ids, train_head=train_head)
        losses[train_head].backward()
        from_head = matrix.grad[tiny_embedder.embed_token_id].abs().sum().item()
        below = sum(p.grad.abs().sum().item() for name, p in model.named_parameters()
                    if p.grad is not None and "layers." in name)
        assert below > 0
        assert (from_head > 0) == train_head
    torch.testing.assert_close(losses[True], losses[False])


@pytest.mark.parametrize("changes, message", [
    ({"infonce_temperature": 0}, "infonce_temperature"),
    ({"hard_negatives": 0}, "triplet_weight > 0 needs hard negatives"),
    ({"hard_negatives": 9, "mine_top_k": 4}, "mine_top_k"),
    ({"infonce_weight": 0, "triplet_weight": 0}, "nothing teaches"),
    ({"refresh": "sometimes"}, "refresh"),
    ({"steps": 0}, "steps"),
])
def test_bad_configs_say_how_to_fix_them(changes, message):
    with pytest.raises(ConfigError, match=message):
        SFTConfig(**changes)


@pytest.fixture
def toy_set():
    return load_dataset("semanlink").subset(num_queries=16, num_docs=40, seed=0)


def _config(tmp_path, **changes):
    settings = dict(steps=30, batch_size=8, num_queries=None, corpus_docs=None, learning_rate=3e-3,
                    mine_top_k=4, hard_negatives=1, output_dir=str(tmp_path / "run"), save_every=10, log_every=5,
                    reasoning_fraction=0.0, reasoning_tokens=4)  # the toy checks measure the direct path
    return SFTConfig(**{**settings, **changes})


def _mrr(embedder, dataset):
    run = dense_run(dataset, embedder.encode_queries(dataset.query_texts), embedder.encode_documents(dataset.documents))
    return ir_metrics(run, dataset.qrels)["mrr@10"]


def _positive_margin(embedder, dataset):
    """Mean over queries of cos(query, relevant) - cos(query, non-relevant)."""
    q = embedder.encode_queries(dataset.query_texts)
    d = embedder.encode_documents(dataset.documents)
    scores = q @ d.T
    relevant = np.zeros_like(scores, dtype=bool)
    for i, query_id in enumerate(dataset.query_ids):
        relevant[i, dataset.relevant_rows(query_id)[0]] = True
    return float(np.mean([scores[i][relevant[i]].mean() - scores[i][~relevant[i]].mean() for i in range(len(q))]))


def test_sft_learns_the_toy_set(tiny_embedder, toy_set, tmp_path):
    before_mrr, before_margin = _mrr(tiny_embedder, toy_set), _positive_margin(tiny_embedder, toy_set)
    start = copy.deepcopy(tiny_embedder.model.state_dict())
    trained = train_sft(_config(tmp_path), embedder=tiny_embedder, dataset=toy_set, progress=False)
    assert trained.version == 30  # one version per optimiser step
    assert any(not torch.equal(start[k], v) for k, v in trained.model.state_dict().items())
    after_mrr, after_margin = _mrr(trained, toy_set), _positive_margin(trained, toy_set)
    assert after_mrr > before_mrr + 0.3, (before_mrr, after_mrr)
    assert after_margin > 0 and after_margin > before_margin
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert len(list_checkpoints(tmp_path / "run")) == 2  # the newest and its predecessor are kept


def _toy_infonce(embedder, dataset):
    """InfoNCE of every query against the whole toy corpus: a fixed yardstick, unlike the per-step
    loss, whose mined negatives get harder as the model learns."""
    from sr3_agent.training.losses import info_nce

    q = torch.as_tensor(embedder.encode_queries(dataset.query_texts))
    d = torch.as_tensor(embedder.encode_documents(dataset.documents))
    positives = [int(dataset.relevant_rows(query_id)[0][0]) for query_id in dataset.query_ids]
    others = [i for i in range(len(d)) if i not in positives]
    return info_nce(q, d[positives], d[others], temperature=0.05).item()


def test_losses_fall_and_are_logged(tiny_embedder, toy_set, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    before = _toy_infonce(tiny_embedder, toy_set)
    trained = train_sft(_config(tmp_path, log_every=1), embedder=tiny_embedder, dataset=toy_set, progress=False)
    assert _toy_infonce(trained, toy_set) < before - 0.15  # measured: 3.66 -> 3.38 (16 queries x 40 documents)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert len(events.Scalars("losses/total")) == 30
    assert {"losses/info_nce", "losses/triplet", "losses/lm", "index/rows_reencoded", "index/stale_fraction",
            "charts/gold_rank", "time/step_s"} <= set(events.Tags()["scalars"])
    lm = [e.value for e in events.Scalars("losses/lm")]
    assert lm[-1] < lm[0]  # the embed token after a prompt gets likelier


def test_resume_continues_exactly(tiny_embedder, toy_set, tmp_path):
    sampled = dict(reasoning_fraction=0.5, reasoning_temperature=1.0)  # sampling must resume exactly too
    straight = train_sft(_config(tmp_path / "a", steps=6, save_every=3, **sampled), embedder=copy.deepcopy(tiny_embedder),
                         dataset=toy_set, progress=False)
    train_sft(_config(tmp_path / "b", steps=3, save_every=3, **sampled), embedder=copy.deepcopy(tiny_embedder),
              dataset=toy_set, progress=False)  # "interrupted" after 3 steps
    shutil.copytree(tmp_path / "b", tmp_path / "c")  # a run folder copied elsewhere resumes there
    resumed = train_sft(_config(tmp_path / "c", steps=6, save_every=3, resume=True, **sampled),
                        embedder=copy.deepcopy(tiny_embedder), dataset=toy_set, progress=False)
    assert resumed.version == straight.version == 6
    saved = json.loads((tmp_path / "c" / "run" / "config.json").read_text())
    assert (saved["steps"], saved["output_dir"]) == (6, str(tmp_path / "c" / "run"))  # what the resumed run did
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_resume_refuses_a_changed_config(tiny_embedder, toy_set, tmp_path):
    train_sft(_config(tmp_path, steps=2, save_every=2), embedder=tiny_embedder, dataset=toy_set, progress=False)
    with pytest.raises(ConfigError, match="learning_rate"):
        train_sft(_config(tmp_path, steps=4, resume=True, learning_rate=1e-2), embedder=tiny_embedder,
                  dataset=toy_set, progress=False)


def test_resume_without_a_checkpoint_says_so(tiny_embedder, toy_set, tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train_sft(_config(tmp_path, resume=True), embedder=tiny_embedder, dataset=toy_set, progress=False)


def test_lora_trains_only_adapters(tiny_embedder, toy_set, tmp_path):
    base = copy.deepcopy(tiny_embedder.model.state_dict())
    trained = train_sft(_config(tmp_path, steps=3, lora=True, lora_rank=4), embedder=tiny_embedder, dataset=toy_set,
                        progress=False)
    trainable = [n for n, p in trained.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    merged = type(trained).from_pretrained(tmp_path / "run" / "final", device="cpu")  # saved with LoRA merged
    changed = [k for k, v in merged.model.state_dict().items() if k in base and not torch.equal(base[k], v)]
    assert changed


def test_too_few_non_relevant_documents_is_a_clear_error():
    with pytest.raises(ValueError, match="Lower --hard-negatives"):
        pick_hard_negatives(np.array([[0, 1, 2]]), [np.array([0, 1])], count=2, num_docs=3, rng=np.random.default_rng(0))


def test_first_ctrl_c_only_asks_to_stop():
    import os
    import signal

    from sr3_agent.training.checkpoint import graceful_interrupt

    before = signal.getsignal(signal.SIGINT)
    with graceful_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested  # noted, not raised: the loop finishes its step and saves
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second one aborts
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


def test_an_interrupted_run_saves_and_resumes(tiny_embedder, toy_set, tmp_path, monkeypatch):
    import contextlib

    import sr3_agent.training.sft as sft

    class StopAtVersionTwo:  # what a Ctrl-C during the second step does to the flag
        @property
        def requested(self):
            return tiny_embedder.version >= 2

    monkeypatch.setattr(sft, "graceful_interrupt", lambda: contextlib.nullcontext(StopAtVersionTwo()))
    train_sft(_config(tmp_path, steps=4, save_every=100), embedder=tiny_embedder, dataset=toy_set, progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-0000002"]
    assert not (tmp_path / "run" / "final").exists()
    monkeypatch.undo()
    resumed = train_sft(_config(tmp_path, steps=4, save_every=100, resume=True), embedder=copy.deepcopy(tiny_embedder),
                        dataset=toy_set, progress=False)
    assert resumed.version == 4 and (tmp_path / "run" / "final").is_dir()


def test_resume_accepts_a_run_saved_before_a_setting_existed(tmp_path):
    import dataclasses
    import json

    from sr3_agent.training.checkpoint import check_resumable

    config = SFTConfig(output_dir=str(tmp_path))
    saved = dataclasses.asdict(config)
    del saved["precision"]  # a run started by a version without --precision
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_resumable(tmp_path, config)  # the new setting at its default: the same experiment
    with pytest.raises(ConfigError, match="precision: 'auto' -> 'bf16'"):
        check_resumable(tmp_path, dataclasses.replace(config, precision="bf16"))
