"""The benchmark scripts run at a tiny size and write results that make sense."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_QRELS, write_beir

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def load(monkeypatch):
    """Import a benchmark script as a module (they import their helpers from benchmarks/_common.py)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_bench_index_runs_at_a_tiny_size(load, tmp_path, capsys):
    results = load("bench_index").main(["--n-docs", "2000", "--dim", "32", "--batch", "8", "--top-k", "10",
                                        "--repeats", "2", "--warmup", "1", "--steps", "2", "--n-queries", "50",
                                        "--out", str(tmp_path / "index.json")])
    assert results["ranks_agree_with_bare"]
    assert [row["policy"] for row in results["drift"]] == ["lazy", "full"]
    assert json.loads((tmp_path / "index.json").read_text())["environment"]["threads"] >= 1
    assert "| index.search (torch) |" in capsys.readouterr().out


def test_bench_refresh_policies_behave_as_documented(load, tmp_path, capsys):
    N, B, k, steps, every = 3000, 16, 20, 6, 3
    load("bench_refresh").main(["--n-docs", str(N), "--dim", "32", "--batch", str(B), "--top-k", str(k), "--steps",
                                str(steps), "--refresh-every", str(every), "--out", str(tmp_path / "refresh.json")])
    results = json.loads((tmp_path / "refresh.json").read_text())
    policies = results["policies"]
    assert list(policies) == ["lazy", "periodic", "full", "frozen"]
    for row in policies.values():
        assert len(row["steps"]) == steps and 0.0 <= row["top_k_overlap"] <= 1.0
        assert {"mean", "median", "p90", "max", "exact_fraction"} <= set(row["rank_error"])
        assert all(s["search_ms"] > 0 for s in row["steps"])
    full, frozen, lazy, periodic = policies["full"], policies["frozen"], policies["lazy"], policies["periodic"]
    # full: every row is stale after each version, all are re-encoded, and the ranks are the exact ones
    assert [s["rows_reencoded"] for s in full["steps"]] == [N] * steps
    assert full["rank_error"]["max"] == 0 and full["rank_error"]["exact_fraction"] == 1.0
    assert full["top_k_overlap"] == 1.0 and full["stale_fraction"] == 0.0
    # frozen: nothing re-encoded, everything stale, and the drift does move ranks
    assert [s["rows_reencoded"] for s in frozen["steps"]] == [0] * steps and frozen["stale_fraction"] == 1.0
    assert frozen["rank_error"]["mean"] > 0
    # lazy: some rows (at most the candidates and the gold rows), and no worse than frozen
    assert all(0 < s["rows_reencoded"] <= B * k + B for s in lazy["steps"])
    assert lazy["rank_error"]["mean"] <= frozen["rank_error"]["mean"]
    assert lazy["top_k_overlap"] >= frozen["top_k_overlap"]
    # periodic: a full refresh every `every` versions (exact then), lazy in between
    for s in periodic["steps"]:
        if s["step"] % every == 0:
            assert s["rows_reencoded"] == N and s["rank_error_mean"] == 0.0
        else:
            assert s["rows_reencoded"] <= B * k + B
    modelled = results["modelled_step_s"]
    assert modelled["full"]["SmolLM2-135M, 25-token docs"] > modelled["lazy"]["SmolLM2-135M, 25-token docs"]
    assert 0 < results["exact"]["recall_at_k"] <= 1
    out = capsys.readouterr().out
    assert "| lazy |" in out and "Modelled seconds per step" in out


def test_bench_refresh_models_a_slow_encoder(load, tmp_path):
    results = load("bench_refresh").main(["--n-docs", "500", "--dim", "16", "--batch", "4", "--top-k", "5", "--steps",
                                          "2", "--policies", "full", "frozen", "--encode-us-per-row", "200",
                                          "--encoder-rate", "slow=10", "--out", str(tmp_path / "r.json")])
    full, frozen = results["policies"]["full"], results["policies"]["frozen"]
    assert full["search_ms_mean"] >= 500 * 0.2  # 500 rows x 200 µs of modelled encoding
    assert frozen["search_ms_mean"] < full["search_ms_mean"]
    assert results["modelled_step_s"]["full"]["slow"] == pytest.approx(full["index_ms_mean"] / 1000 + 500 / 10)


def test_bench_training_observes_the_real_loops(load, tiny_embedder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    tiny_embedder.save_pretrained(tmp_path / "model")
    data = write_beir(tmp_path / "beir", qrels={"train": TINY_QRELS})
    results = load("bench_training").main(["--quick", "--model", str(tmp_path / "model"), "--dataset", str(data),
                                           "--queries", "none", "--corpus-docs", "none", "--device", "cpu",
                                           "--out", str(tmp_path / "training.json")])
    names = {"sft (plain)", "sft (prefix)", "rl (plain)", "rl (prefix)"}
    assert json.loads((tmp_path / "training.json").read_text())["jobs"].keys() == names
    for name, job in results["jobs"].items():
        summary = job["summary"]
        assert job["steps_run"] == 2 and job["steps_timed"] == 1 and job["dtype"] == "fp32"
        assert summary["s_per_step"] > 0 and summary["grad_tokens_per_step"] > 0
        assert summary["grad_tokens_per_s"] == pytest.approx(summary["grad_tokens_per_step"] / summary["s_per_step"])
        assert summary["nograd_tokens_per_step"] > 0  # the index re-encodes the rows the step made stale
        assert job["peak_rss_mib"] >= job["rss_after_model_load_mib"] > 0
    sft, rl = results["jobs"]["sft (prefix)"], results["jobs"]["rl (prefix)"]
    assert rl["summary"]["generated_tokens_per_step"] > 0  # 2 x 2 sampled reasonings
    assert rl["summary"]["speedup_vs_plain"] > 0
    # the prefix path computes fewer tokens for the same step: each prompt once for its samples, no shared prefix
    plain_rl = results["jobs"]["rl (plain)"]["summary"]
    assert rl["summary"]["grad_tokens_per_step"] < plain_rl["grad_tokens_per_step"]
    # the loops' own timers lie inside the measured step
    assert sft["summary"]["tensorboard_means"]["time/step_s"] <= sft["summary"]["s_per_step"] + 0.05
    phases = sum(v for tag, v in rl["summary"]["tensorboard_means"].items() if tag.startswith("time/"))
    assert phases <= rl["summary"]["s_per_step"] + 0.05
    assert np.isfinite(phases) and "| sft (prefix) |" in capsys.readouterr().out


def test_bench_embedder_compares_the_two_paths(load, tiny_embedder, tmp_path, capsys):
    tiny_embedder.save_pretrained(tmp_path / "model")
    results = load("bench_embedder").main(["--model", str(tmp_path / "model"), "--docs", "12", "--queries", "6",
                                           "--reasoning-queries", "3", "--batch-sizes", "4", "--reasoning-batch", "3",
                                           "--max-new-tokens", "3", "--output", str(tmp_path / "embedder.json")])
    rows = results["rows"]
    assert {(r["what"].split(" (")[0].split(",")[0], r["path"]) for r in rows} >= {("documents", "plain"),
                                                                                   ("documents", "prefix"),
                                                                                   ("queries", "prefix")}
    for row in rows:
        assert row["max_abs_diff"] <= 1e-4 and row["seconds"] > 0  # the same vectors on both paths
        if row["computed_tokens_per_text"] and row["path"] == "prefix":
            plain = next(r for r in rows if r["what"] == row["what"] and r["path"] == "plain")
            assert row["computed_tokens_per_text"] < plain["computed_tokens_per_text"]
    assert results["wordnet_full_corpus"]["projected_minutes"] > 0
    assert json.loads((tmp_path / "embedder.json").read_text())["rows"] == rows
    assert "| documents (wordnet-revdict) | prefix |" in capsys.readouterr().out


def test_bench_embedder_times_bf16_beside_fp32(load, tiny_embedder, tmp_path):
    tiny_embedder.save_pretrained(tmp_path / "model")
    results = load("bench_embedder").main(["--model", str(tmp_path / "model"), "--docs", "8", "--queries", "4",
                                           "--reasoning-queries", "2", "--batch-sizes", "4", "--reasoning-batch", "2",
                                           "--max-new-tokens", "2", "--bf16", "--output", str(tmp_path / "e.json")])
    bf16 = [r for r in results["rows"] if r["path"] == "prefix, bf16"]
    assert [r["what"] for r in bf16] == ["documents (wordnet-revdict)"]
    assert 0 < bf16[0]["max_abs_diff"] < 0.1 and bf16[0]["min_cosine"] > 0.99  # bf16 rounding, not the same vectors
    assert results["wordnet_full_corpus"]["path"] == "prefix, bf16"


def test_bench_training_refuses_fp16_on_a_cpu(load, capsys):
    with pytest.raises(SystemExit):
        load("bench_training").main(["--device", "cpu", "--dtype", "fp16"])
    assert "fp16 needs --device cuda" in capsys.readouterr().err


def test_training_steps_are_differences_of_optimiser_step_snapshots(load):
    module = load("bench_training")
    snapshots = [{"time": 10.0, "grad_tokens": 100, "nograd_tokens": 50, "generated_tokens": 0},
                 {"time": 12.5, "grad_tokens": 160, "nograd_tokens": 80, "generated_tokens": 8}]
    assert module.per_step(snapshots) == [{"seconds": 2.5, "grad_tokens": 60, "nograd_tokens": 30, "generated_tokens": 8}]
    with pytest.raises(SystemExit, match="at least 2"):
        module.summarise({"job": "sft", "steps_run": 1, "per_step": []})


def test_bench_scoring_measures_the_index_beside_its_references(load, tmp_path, capsys):
    results = load("bench_scoring").main(["--sizes", "3000", "--dims", "32", "48", "--batch", "8", "--batches", "1", "4",
                                          "--sweep-size", "2000", "--sweep-dim", "16", "--top-k", "10", "--budget", "0.05",
                                          "--out", str(tmp_path / "scoring.json")])
    assert [(r["n"], r["d"]) for r in results["grid"]] == [(3000, 32), (3000, 48)]
    assert [r["batch"] for r in results["batch_sweep"]] == [1, 4]
    for row in results["grid"] + results["batch_sweep"]:
        assert row["ranks_equal_bare"]
        assert set(row["timings"]) >= {"read", "matmul", "bare", "index"}
        assert row["index_over_bare"] == pytest.approx(row["timings"]["index"]["median_ms"] / row["timings"]["bare"]["median_ms"])
    assert json.loads((tmp_path / "scoring.json").read_text())["target"] == "index/bare <= 1.2"
    assert (tmp_path / "scoring.png").stat().st_size > 10_000
    assert "| index/bare |" in capsys.readouterr().out


def test_bench_ann_reports_recall_and_rank_agreement(load, tmp_path):
    results = load("bench_ann").main(["--sizes", "4000", "--dim", "16", "--rows-per-cluster", "100", "--batch", "8", "--batches", "2",
                                      "--top-k", "10", "--probes", "1", "1000", "--candidates", "100", "--lists", "20",
                                      "--out", str(tmp_path / "ann.json")])
    few, every = results["rows"]
    assert every["recall_at_k"] == 1.0 and every["ranks_equal"] == 1.0  # visiting every cell is exact
    assert few["recall_at_k"] <= every["recall_at_k"]


def test_bench_sharded_runs_two_processes_and_checks_equality(load, tmp_path):
    results = load("bench_sharded").main(["--n", "3000", "--dim", "16", "--batch", "8", "--batches", "2",
                                          "--top-k", "10", "--out", str(tmp_path / "sharded.json")])
    row = results["row"]
    assert row["results_equal"] and row["rows_per_process"] == [1500, 1500]


def test_bench_precision_keeps_every_rank_move_within_the_rounding_bound(load, tmp_path):
    results = load("bench_precision").main(["--n", "3000", "--dim", "32", "--batch", "16", "--clusters", "30",
                                            "--noise", "2", "--out", str(tmp_path / "precision.json")])
    assert [(r["corpus"], r["dtype"]) for r in results["rows"]] == [
        ("random", "float16"), ("random", "bfloat16"), ("clustered", "float16"), ("clustered", "bfloat16")]
    assert all(r["moves_within_near_ties"] for r in results["rows"])
    assert all(0.0 <= r["ranks_equal"] <= 1.0 for r in results["rows"])


def test_bench_soak_runs_short_and_keeps_its_invariants(load, tmp_path, capsys):
    results = load("bench_soak").main(["--steps", "300", "--n-docs", "3000", "--dim", "32", "--batch", "16",
                                       "--n-queries", "200", "--top-k", "10", "--refresh-budget", "16", "--warmup", "100",
                                       "--sample-every", "20", "--check-every", "100", "--out", str(tmp_path / "soak.json")])
    assert results["invariant_checks"]["passed"] == 3  # steps 100, 200, 300: each raises if an invariant fails
    rows = results["rows_reencoded"]
    assert rows["equal"] and rows["total_reported"] == rows["sum_of_steps"] and rows["per_step_mean"] > 16
    assert len(results["memory"]["samples"]) == 1 + 300 // 20 and results["memory"]["rss_final_mb"] > 0
    assert results["step_ms"]["median"] > 0 and results["final_stale_fraction"] > 0.5  # most rows age: lazy refresh
    assert json.loads((tmp_path / "soak.json").read_text())["settings"]["steps"] == 300
    assert "| env.step |" in capsys.readouterr().out


def test_bench_main_job_clones_times_and_projects(load, tmp_path, capsys):
    """The plumbing of the fresh-clone timing, with a small command in place of `make demo`: it runs in a
    clone of the committed HEAD with an empty SR3_CACHE_DIR, and its stage times reach the table and JSON."""
    module = load("bench_main_job")
    assert module.projected_minutes(15.0, 200.0, 100.0) == 30.0
    command = ('test -z "$(ls "$SR3_CACHE_DIR")" && test -f pyproject.toml && mkdir -p runs/train && '
               'echo \'{"sft": 60.0, "eval": 30.0}\' > runs/train/timings.json && echo table > runs/train/results.md')
    result = module.main(["--command", command, "--workdir", str(tmp_path / "work"), "--copy-results",
                          str(tmp_path / "copied"), "--output", str(tmp_path / "main_job.json")])
    assert result["stage_minutes"] == {"sft": 1.0, "eval": 0.5} and result["wall_seconds"] > 0
    assert result["matmul_gflops_before"] > 0 and len(result["commit"]) == 40
    assert result["projected_minutes_on_slow"] == pytest.approx(
        result["wall_seconds"] / 60 * max(result["matmul_gflops_before"], result["matmul_gflops_after"]) / 100, abs=0.06)
    assert json.loads((tmp_path / "main_job.json").read_text())["commit"] == result["commit"]
    assert (tmp_path / "copied" / "results.md").read_text() == "table\n"
    assert "| target on the slower machines | 30 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already holds"):  # the job must start from nothing
        module.main(["--command", "true", "--workdir", str(tmp_path / "work")])
    with pytest.raises(SystemExit, match="failed \\(exit 3\\)"):
        module.main(["--command", "exit 3", "--workdir", str(tmp_path / "other"), "--output", str(tmp_path / "x.json")])


def test_bench_architectures_shows_the_window_check_at_work(load, tmp_path, capsys):
    results = load("bench_architectures").main(["--unchecked", "--output", str(tmp_path / "arch.json")])
    checked = [row for row in results["rows"] if row["window_check"]]
    unchecked = {row["family"]: row for row in results["rows"] if not row["window_check"]}
    assert len(checked) == len(unchecked) == 10
    assert all(max(row["documents"], row["queries"], row["reasoning"]) <= 1e-4 for row in checked)
    for family, row in unchecked.items():  # without the check, only the sliding-window families go wrong
        wrong = max(row["documents"], row["queries"], row["reasoning"]) > 1e-3
        assert wrong == (row["window"] is not None), family
    assert "| gemma3-sliding | 48 | off |" in capsys.readouterr().out


def test_bench_recipe_runs_every_stage_beside_its_budget(load, tmp_path, capsys, monkeypatch):
    """The paper's recipe falls back to the given model where Qwen2.5 is not in the local cache."""
    from sr3_agent.model.tiny_models import tiny_model, tiny_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    tokenizer = tiny_tokenizer()
    tiny_model("qwen2", tokenizer).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    results = load("bench_recipe").main(["--steps", "1", "--corpus-docs", "60", "--train-queries", "32",
                                         "--fallback-model", str(tmp_path / "tiny"), "--output", str(tmp_path / "recipe.json")])
    assert [row["stage"] for row in results["rows"]] == ["sft", "rs", "rl"]
    assert all(row["model"] == str(tmp_path / "tiny") and row["peak_gib"] > 0 and row["budget_gib"] > 0
               and 0 < row["seconds_per_step"] < row["seconds"] for row in results["rows"])
    assert results["config"]["lora"] and results["config"]["activation_checkpointing"]
    assert "| rl | 1 |" in capsys.readouterr().out


def test_bench_threads_times_each_case_in_its_own_process(load, tiny_embedder, tmp_path, capsys):
    tiny_embedder.save_pretrained(tmp_path / "model")
    results = load("bench_threads").main(["--model", str(tmp_path / "model"), "--texts", "4", "--repeats", "2",
                                          "--output", str(tmp_path / "threads.json")])
    assert [len(times) for times in results["times"].values()] == [2, 2, 2]
    assert all(t > 0 for times in results["times"].values() for t in times) and results["rows"][0]["vs_main"] == 1.0
    assert "MicroBatcher.call" in capsys.readouterr().out and (tmp_path / "threads.json").is_file()


def test_bench_generation_times_both_caches_and_compares_their_tokens(load, tiny_embedder, tmp_path, capsys):
    tiny_embedder.save_pretrained(tmp_path / "model")
    results = load("bench_generation").main(["--model", str(tmp_path / "model"), "--device", "cpu", "--queries", "3",
                                             "--batch", "2", "--max-new-tokens", "3", "--repeats", "2",
                                             "--output", str(tmp_path / "generation.json")])
    rows = results["rows"]
    assert [r["cache"] for r in rows] == ["dynamic", "static"] and rows[0]["speedup"] == 1.0
    for row in rows:
        assert row["same_greedy_tokens"] == row["reasonings"] == 3 and row["max_abs_diff_same_rows"] <= 1e-4
        assert row["reasonings_per_s"] > 0 and len(row["seconds_all"]) == 2 and not row["compiled"]  # eager on a CPU
        assert row["mean_reasoning_tokens"] == 3  # a random model never writes the token: every reasoning to its cap
    assert json.loads((tmp_path / "generation.json").read_text())["rows"] == rows
    assert "| static | no |" in capsys.readouterr().out
