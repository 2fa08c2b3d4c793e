"""`sr3 train`: the stage settings, the plot, and the whole job end to end on a tiny model and a tiny BEIR folder."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from conftest import TINY_QRELS, write_beir

from sr3_agent.cli import build_parser, main
from sr3_agent.config import ConfigError, TrainConfig, config_from_args
from sr3_agent.training.train_command import (comparison_pairs, comparison_table, eval_embedders, plot_rl_curves, read_scalars,
                                recipe_note, round_end, stage_configs, stage_state)
from sr3_agent.cli import COMMANDS


def test_stage_configs_carry_the_shared_settings():
    config = TrainConfig(dataset="semanlink", train_queries=64, corpus_docs=100, sft_steps=7, rs_steps=4, rl_steps=5,
                         reasoning_tokens=12, seed=3, output_dir="out")
    stages, evaluation, models = stage_configs(config)
    assert [name for name, _ in stages] == ["sft", "rs", "rl"]
    (_, sft), (_, rs), (_, rl) = stages
    assert (sft.dataset, sft.num_queries, sft.corpus_docs, sft.steps, sft.seed) == ("semanlink", 64, 100, 7, 3)
    assert sft.output_dir == "out/sft" and sft.reasoning_tokens == 12 and sft.reasoning_fraction == 0.0
    assert rs.model == "out/sft/final" and rs.output_dir == "out/rs" and rs.steps == 4
    assert rs.keep == "best" and rs.reasoning_samples == 4 and rs.lm_weight > 0 and rs.seed == 3
    assert not rs.lm_direct  # the LM loss labels the kept reasonings, not the token right after a direct prompt
    assert rl.model == "out/rs/final" and rl.output_dir == "out/rl" and rl.steps == 5 and rl.reasoning_tokens == 12
    assert list(models) == ["SFT", "SFT+RS", "SFT+RS+RL"]
    assert evaluation.models == ["out/sft/final", "out/rs/final", "out/rl/final"]
    # every stage evaluates on the same dev sample and selects by the same metric; RS and RL hold the direct embedding
    assert {s.eval_queries for s in (sft, rs, rl)} == {config.dev_queries}
    assert (sft.select_by, rs.select_by, rl.select_by) == ("best", "reasoning", "best")  # RS keeps its best reasoning
    assert (sft.eval_every, rs.eval_every, rl.eval_every) == (12, 8, 10)
    assert sft.anchor_weight == 0 and rs.anchor_weight == rl.anchor_weight == config.anchor_weight > 0
    assert evaluation.datasets == ["semanlink"] and evaluation.reasoning and evaluation.reasoning_tokens == 12
    assert evaluation.seed == 0 and evaluation.output == "out/results.json"  # same test sample for every seed


def test_each_stage_takes_its_own_learning_rate():
    """--sft-learning-rate, --rs-learning-rate and --rl-learning-rate reach their stages; the defaults are the rates
    each stage had before they were options (those of training all weights)."""
    defaults = {name: config.learning_rate for name, config in stage_configs(TrainConfig())[0]}
    assert defaults == {"sft": 5e-5, "rs": 2e-5, "rl": 1e-5}
    parser = build_parser()
    args = parser.parse_args(["train", "--sft-learning-rate", "2e-4", "--rs-learning-rate", "1.5e-4",
                              "--rl-learning-rate", "1e-4"])
    stages, _, _ = stage_configs(config_from_args(TrainConfig, args))
    assert {name: config.learning_rate for name, config in stages} == {"sft": 2e-4, "rs": 1.5e-4, "rl": 1e-4}
    without_rs = stage_configs(TrainConfig(rs_steps=0, rl_learning_rate=3e-5))[0]
    assert {name: config.learning_rate for name, config in without_rs} == {"sft": 5e-5, "rl": 3e-5}
    help_text = parser.commands["train"].format_help()
    assert all(flag in help_text for flag in ("--sft-learning-rate", "--rs-learning-rate", "--rl-learning-rate"))


def test_the_recipe_note_names_the_stages_and_gives_commands_sr3_accepts():
    config = TrainConfig(dataset="semanlink", train_queries=None, corpus_docs=300, output_dir="out")
    note = recipe_note(config)
    assert note.startswith("Recipe: SFT (24 steps), then rejection-sampling SFT (8 steps), then one-turn RL (20 steps)")
    commands = [line.split()[1:] for line in note.splitlines() if line.startswith("    sr3 ")]
    assert [words[0] for words in commands] == ["sft", "rl", "eval"]
    parser = build_parser()
    configs = [config_from_args(COMMANDS[words[0]][0], parser.parse_args(words)) for words in commands]  # valid settings
    assert configs[0].model == "out/sft/final" and configs[0].feedback_fraction == 0.5 and configs[0].num_queries is None
    assert configs[1].model == configs[0].output_dir + "/final" and configs[1].turns == 2 and configs[1].steps == 120
    assert configs[1].corpus_docs == 300 and configs[2].models == [configs[1].output_dir + "/final"]
    assert (configs[2].turns, configs[2].num_queries, configs[2].corpus_docs) == (2, None, None)
    assert recipe_note(TrainConfig(rs_steps=0)).startswith("Recipe: SFT (24 steps), then one-turn RL (20 steps)")


def test_the_table_loads_its_models_with_the_configured_precision_and_batch(tiny_embedder, tmp_path):
    """`sr3 train --precision bf16` reaches the evaluation too (it once did not: the models were loaded in fp32)."""
    tiny_embedder.save_pretrained(tmp_path / "run" / "rl" / "final")
    config = TrainConfig(model=str(tmp_path / "run" / "rl" / "final"), rs_steps=0, eval_base=True, precision="bf16",
                         device="cpu", output_dir=str(tmp_path / "run"))
    _, evaluation, models = stage_configs(config)
    models = {label: path for label, path in models.items() if label != "SFT"}  # SFT's folder was never trained here
    loaded = eval_embedders(models, evaluation)
    assert [label for label, _ in loaded] == ["base", "SFT+RL"]
    assert all(e.autocast_dtype is torch.bfloat16 and e.batch_size == evaluation.batch_size == 64 for _, e in loaded)
    assert eval_embedders(models, dataclasses.replace(evaluation, precision="fp32"))[1][1].autocast_dtype is None


def test_without_rejection_sampling_rl_starts_from_sft():
    stages, _, models = stage_configs(TrainConfig(rs_steps=0, eval_base=True, output_dir="out"))
    assert [name for name, _ in stages] == ["sft", "rl"] and stages[1][1].model == "out/sft/final"
    assert list(models) == ["base", "SFT", "SFT+RL"]


@pytest.mark.parametrize("changes, message", [
    ({"group_size": 1}, "group_size must be >= 2"),
    ({"train_queries": 8}, "train_queries \\(8\\) must be at least sft_batch_size"),
    ({"eval_docs": 0}, "eval_docs must be >= 1 or none"),
    ({"rs_steps": -1}, "rs_steps"),
    ({"sft_reasoning_fraction": 2.0}, "sft_reasoning_fraction"),
    ({"rl_learning_rate": 0.0}, "rl_learning_rate must be > 0, got 0.0"),
    ({"sft_learning_rate": -1e-4}, "sft_learning_rate must be > 0"),
    ({"interpolate": [0.5, 1.0]}, "strictly between 0 and 1"),
])
def test_bad_train_configs_say_how_to_fix_them(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_comparisons_pair_each_way_with_direct_and_rl_with_before():
    pairs = comparison_pairs(["SFT", "SFT+RL"])
    assert ("SFT (direct)", "SFT (fused)") in pairs and ("SFT+RL (direct)", "SFT+RL (reasoning)") in pairs
    assert ("SFT (reasoning)", "SFT+RL (reasoning)") in pairs and len(pairs) == 7
    auto = comparison_pairs(["SFT", "SFT+RL"], auto=True)
    assert set(pairs) < set(auto) and len(auto) == 10
    assert ("SFT+RL (direct)", "SFT+RL (auto)") in auto and ("SFT (auto)", "SFT+RL (auto)") in auto
    rows = [{"system": "A (direct)", "per_query_ndcg@10": {"q1": 0.5, "q2": 0.5}},
            {"system": "A (fused)", "per_query_ndcg@10": {"q1": 0.7, "q2": 0.7}}]
    table = comparison_table(rows, [("A (direct)", "A (fused)"), ("A (direct)", "A (reasoning)")])
    assert "| A (fused) vs A (direct) | +0.200 | [+0.200, +0.200] |" in table
    assert "A (reasoning)" not in table  # a missing row is left out


def test_train_auto_reaches_rl_and_the_table():
    stages, evaluation, _ = stage_configs(TrainConfig(auto=True))
    assert dict(stages)["rl"].auto and evaluation.auto and not any(getattr(c, "auto", False) for n, c in stages if n != "rl")
    stages, evaluation, _ = stage_configs(TrainConfig())
    assert not dict(stages)["rl"].auto and not evaluation.auto  # the main job: no auto rows (they repeat reasoning's)


def test_stage_state(tmp_path):
    assert stage_state(tmp_path / "sft") == "new"
    (tmp_path / "sft" / "checkpoint-0000002").mkdir(parents=True)
    assert stage_state(tmp_path / "sft") == "interrupted"
    (tmp_path / "sft" / "final").mkdir()
    (tmp_path / "sft" / "final" / "sr3_embedder.json").write_text("{}")
    assert stage_state(tmp_path / "sft") == "done"


def test_curves_are_read_back_and_plotted(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(1, 5):
        writer.add_scalar("charts/reward_mean", 0.1 * step, step)
    writer.add_scalar("dev/ndcg@10_direct", 0.3, 0)
    writer.add_scalar("dev/ndcg@10_direct", 0.4, 4)
    writer.close()
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["dev/ndcg@10_direct"] == [(0, pytest.approx(0.3)), (4, pytest.approx(0.4))]
    assert [step for step, _ in scalars["charts/reward_mean"]] == [1, 2, 3, 4]
    path = plot_rl_curves(scalars, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _tiny_train_argv(tiny_embedder, tmp_path, monkeypatch, *extra):
    """`sr3 train` of the tiny model on a tiny BEIR folder (dev carved off train), every stage evaluated each step."""
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    tiny_embedder.save_pretrained(tmp_path / "base")
    data = write_beir(tmp_path / "beir", qrels={"train": TINY_QRELS, "test": TINY_QRELS})
    return ["train", "--model", str(tmp_path / "base"), "--dataset", str(data), "--train-queries", "none",
            "--corpus-docs", "none", "--sft-batch-size", "2", "--rs-steps", "1", "--queries-per-step", "2",
            "--group-size", "2", "--reasoning-tokens", "4", "--sft-eval-every", "1", "--rs-eval-every", "1",
            "--dev-fraction", "0.3", "--dev-queries", "none", "--dev-docs", "none", *extra,
            "--output-dir", str(tmp_path / "run")]


def test_sr3_train_end_to_end_then_resume(tiny_embedder, tmp_path, capsys, monkeypatch):
    argv = _tiny_train_argv(tiny_embedder, tmp_path, monkeypatch, "--sft-steps", "2", "--rl-steps", "2",
                            "--rl-eval-every", "1", "--eval-queries", "none", "--eval-docs", "none",
                            "--min-token-rate", "0",  # a random model writes no format
                            "--interpolate", "0.5")
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["system"] for r in rows] == ["SFT (direct)", "SFT+RS (direct)", "SFT+RS (reasoning)", "SFT+RS (fused)",
                                          "SFT+RS+RL (direct)", "SFT+RS+RL (reasoning)", "SFT+RS+RL (fused)",
                                          "SFT~RL (direct)", "SFT~RL (reasoning)", "SFT~RL (fused)",
                                          "BM25", "all-MiniLM-L6-v2"]  # no auto rows without --auto
    assert "| SFT+RS+RL (reasoning) |" in out and "Token rate" in out and "sr3 train finished in" in out
    assert "| SFT+RS+RL (fused) vs SFT+RS+RL (direct) |" in out and "(auto)" not in out
    assert all(0 <= row["embed_token_rate"] <= 1 for row in rows if "(reasoning)" in row["system"])
    assert (tmp_path / "run" / "rl_curves.png").read_bytes()[:4] == b"\x89PNG"
    curve = read_scalars(tmp_path / "run" / "rl" / "tensorboard")["dev/ndcg@10_direct"]
    assert [step for step, _ in curve] == [0, 1, 2]
    results = (tmp_path / "run" / "results.md").read_text()
    assert "Stage times: sft" in results and "Checkpoints kept" in results and "SFT+RS+RL: step " in results
    assert "| SFT+RS+RL (fused) vs SFT (direct) |" in out  # the final model against the SFT model's direct embedding
    chosen = json.loads((tmp_path / "run" / "selected.json").read_text())  # the best model and way of the run on dev
    assert f"Use {chosen['model']} ({chosen['label']}) with its {chosen['query_way']} query embedding" in out
    scores = [json.loads((tmp_path / "run" / stage / "final" / "sr3_embedder.json").read_text())["selection"]["dev_ndcg@10"]
              for stage in ("sft", "rs", "rl", "interpolated")]
    assert chosen["dev_ndcg@10"] == max(scores)
    curve = json.loads((tmp_path / "run" / "interpolated" / "curve.json").read_text())  # SFT, the mix, RL on dev
    assert [point["alpha"] for point in curve] == [0.0, 0.5, 1.0] and "[interpolate] kept alpha" in out
    kept = json.loads((tmp_path / "run" / "interpolated" / "final" / "sr3_embedder.json").read_text())["selection"]
    assert kept["alpha"] in (0.0, 0.5, 1.0)
    assert kept["dev_ndcg@10"] == round(max(max(p["ndcg"].values()) for p in curve), 4)
    for stage in ("sft", "rs", "rl"):  # each stage scored its start, every step and kept the best
        history = json.loads((tmp_path / "run" / stage / "selection.json").read_text())["history"]
        assert [h["step"] for h in history] == list(range(len(history))) and len(history) >= 2
    assert (tmp_path / "run" / "rs" / "final" / "sr3_embedder.json").is_file()
    for stage in ("sft", "rs", "rl"):  # a finished stage keeps final/ and its selection, not its checkpoints
        folder = tmp_path / "run" / stage
        assert not list(folder.glob("checkpoint-*")) and not (folder / "best.pt").exists()
        assert (folder / "selection.json").is_file() and (folder / "final" / "sr3_embedder.json").is_file()

    with pytest.raises(SystemExit) as exit_info:  # the same folder again without --resume: refused, nothing lost
        main(argv)
    assert exit_info.value.code == 2 and "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume", "--no-baselines"]) == 0
    out = capsys.readouterr().out
    assert "[sft] kept the finished stage" in out and "[rl] kept the finished stage" in out
    assert "[interpolate] kept the finished stage" in out


def test_sr3_train_without_a_test_split_stops_before_training(tiny_embedder, tmp_path, capsys, monkeypatch):
    argv = _tiny_train_argv(tiny_embedder, tmp_path, monkeypatch, "--sft-steps", "1", "--rl-steps", "1")
    write_beir(tmp_path / "beir", qrels={"train": TINY_QRELS})  # the same folder, without qrels/test.tsv
    (tmp_path / "beir" / "qrels" / "test.tsv").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "has no test split" in capsys.readouterr().err
    assert not (tmp_path / "run" / "sft").exists()  # nothing trained


def test_sr3_train_runs_format_rounds_then_says_what_to_change(tiny_embedder, tmp_path, capsys, monkeypatch):
    """A model that never ends its reasonings with the token (the tiny random one, like a base model): the
    rejection-sampling stage runs --format-rounds more rounds, then sr3 train stops before RL and says what to change."""
    argv = _tiny_train_argv(tiny_embedder, tmp_path, monkeypatch, "--sft-steps", "1", "--rl-steps", "1",
                            "--format-rounds", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "1 more steps" in captured.out and "--rs-steps 16" in captured.err
    history = json.loads((tmp_path / "run" / "rs" / "selection.json").read_text())["history"]
    assert [h["step"] for h in history] == [0, 1, 2]  # one round of one more step, every checkpoint a candidate
    assert not (tmp_path / "run" / "rl").exists()  # RL never started
    assert not list((tmp_path / "run" / "sft").glob("checkpoint-*"))  # SFT finished: its checkpoints are removed
    assert list((tmp_path / "run" / "rs").glob("checkpoint-*"))  # the stage that stopped keeps them, to go on from


def test_a_resumed_format_round_runs_to_that_rounds_end():
    assert [round_end(latest, 8) for latest in (0, 3, 8, 20, 24)] == [8, 8, 8, 24, 24]


def test_sr3_train_stopped_in_a_format_round_stops_before_rl_and_resumes_that_round(tiny_embedder, tmp_path, capsys,
                                                                                     monkeypatch):
    """A stop (SIGTERM, Ctrl-C) during a format round: no RL on a model without a final/, the resume command printed;
    --resume finishes the stopped round as one round, then runs the remaining rounds."""
    import sr3_agent.training.sft as sft
    from sr3_agent.training.checkpoint import StopFlag, stop_exit_code

    import sr3_agent.training.train_command as train_command

    real, calls, took, results = sft.train_sft, [], [], []

    def stopped_in_the_first_round(config, **kwargs):  # the stage's first call trains; the next is stopped after a step
        calls.append(config.steps)
        StopFlag.requested = len(calls) == 3  # calls: SFT, rejection sampling, its first format round
        start = time.perf_counter()
        try:
            return real(config, **kwargs)
        finally:
            StopFlag.requested = False
            took.append(time.perf_counter() - start)

    real_run = train_command.run_train
    monkeypatch.setattr(sft, "train_sft", stopped_in_the_first_round)
    monkeypatch.setattr(train_command, "run_train", lambda *a, **k: results.append(real_run(*a, **k)) or results[-1])
    argv = _tiny_train_argv(tiny_embedder, tmp_path, monkeypatch, "--sft-steps", "1", "--rl-steps", "1",
                            "--rs-steps", "2", "--format-rounds", "2", "--keep-checkpoints")
    assert main(argv) == stop_exit_code()  # 128 + the signal, as after a Ctrl-C or SIGTERM (not 0, not an error)
    assert "stopped during rs; continue with: sr3 train --resume" in capsys.readouterr().out
    assert results[0]["interrupted"] == "rs" and results[0]["seconds"]["rs"] >= took[1] + took[2]  # rounds counted
    history = json.loads((tmp_path / "run" / "rs" / "selection.json").read_text())["history"]
    assert [h["step"] for h in history] == [0, 1, 2, 3]  # the round to step 4 stopped after step 3
    assert not (tmp_path / "run" / "rs" / "final").exists() and not (tmp_path / "run" / "rl").exists()

    with pytest.raises(SystemExit) as exit_info:  # the tiny random model never learns the format: two more rounds
        main(argv + ["--resume"])
    assert exit_info.value.code == 2 and "--rs-steps 16" in capsys.readouterr().err
    assert calls[3:] == [4, 6, 8]  # the stopped round finished at step 4, then two rounds of 2 steps
    assert list((tmp_path / "run" / "sft").glob("checkpoint-*")) and (tmp_path / "run" / "sft" / "best.pt").is_file()
    history = json.loads((tmp_path / "run" / "rs" / "selection.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(9))
    assert not (tmp_path / "run" / "rl").exists()
