"""Every example runs, at a tiny budget, so examples cannot drift from the API."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs():
    assert 0.0 <= load("quickstart").main(encoder="hashing") <= 1.0


def test_sb3_demo_runs_at_a_tiny_budget(capsys):
    results = load("sb3_demo").main(["--encoder", "hashing", "--queries", "10", "--timesteps", "512"])
    assert set(results) >= {"random", "frozen encoder (act = observation)", "PPO after 512 steps"}
    assert "| policy |" in capsys.readouterr().out


def test_embed_and_finetune_runs_at_a_tiny_budget(tmp_path, capsys):
    rows = load("embed_and_finetune").main(["--steps", "1", "--train-queries", "16", "--eval-queries", "8",
                                             "--dev-queries", "4", "--eval-docs", "40", "--output-dir", str(tmp_path / "run")])
    assert [r["system"] for r in rows] == ["base (direct)", "base (reasoning)", "base (fused)", "SFT 1 steps (direct)",
                                          "SFT 1 steps (reasoning)", "SFT 1 steps (fused)"]
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    out = capsys.readouterr().out
    assert "| SFT 1 steps (direct) |" in out and "on the dev split" in out


def test_grpo_with_trl_runs_at_a_tiny_budget(tmp_path, capsys):
    logs = load("grpo_with_trl").main(["--steps", "1", "--queries", "8", "--docs", "40",
                                       "--output-dir", str(tmp_path / "run")])
    assert len(logs) == 1 and 0.0 <= logs[0]["rewards/retrieval_log_rank/mean"] <= 1.0
    assert (tmp_path / "run" / "final" / "sr3_embedder.json").is_file()
    assert "mean gold rank" in capsys.readouterr().out


def test_grpo_with_openenv_trains_against_a_server_process(tmp_path, capsys):
    logs = load("grpo_with_openenv").main(["--steps", "1", "--queries", "8", "--docs", "40",
                                           "--output-dir", str(tmp_path / "run")])
    assert len(logs) == 1 and 0.0 <= logs[0]["rewards/remote_retrieval/mean"] <= 1.0
    assert 1 <= logs[0]["sr3/rank_mean"] <= 40
    assert (tmp_path / "run" / "doc-encoder" / "modules.json").is_file()
    assert (tmp_path / "run" / "final" / "sr3_embedder.json").is_file()
    assert "from http://127.0.0.1:" in capsys.readouterr().out


def test_sharded_env_runs_in_a_group_of_one(capsys):
    result = load("sharded_env").main(["--encoder", "hashing", "--steps", "1", "--num-envs", "4"])
    assert result["world"] == 1 and 0.0 <= result["mean_reward"] <= 1.0
    assert "holds rows 0..314 of 314" in capsys.readouterr().out


def test_export_and_serve_runs_at_a_tiny_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    result = load("export_and_serve").main(["--queries", "2", "--docs", "8", "--output-dir", str(tmp_path / "run")])
    assert (result["folder"] / "modules.json").is_file() and result["check"]["query_max_abs_diff"] <= 1e-4
    assert len(result["hits"]) == 2 and all(len(row) == 3 for row in result["hits"])
    assert "/retrieve" in capsys.readouterr().out


def test_every_example_is_tested():
    tested = {"quickstart", "sb3_demo", "embed_and_finetune", "grpo_with_trl", "grpo_with_openenv", "sharded_env",
              "export_and_serve"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested
