"""scripts/compare_evals.py: paired comparison of `sr3 eval` result files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_evals.py"


def load():
    spec = importlib.util.spec_from_file_location("compare_evals", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, label: str, direct: list[float], reasoning: list[float]) -> Path:
    rows = [{"system": f"{label} ({mode})", "ndcg@10": sum(v) / len(v),
             "per_query_ndcg@10": {f"q{i}": x for i, x in enumerate(v)}}
            for mode, v in (("direct", direct), ("reasoning", reasoning))]
    path.write_text(json.dumps(rows))
    return path


def test_differences_and_pooled_seeds(tmp_path, capsys):
    base = write(tmp_path / "sft.json", "sft", [0.5] * 50, [0.4] * 50)
    a = write(tmp_path / "a.json", "a", [0.5] * 50, [0.5] * 50)  # reasoning +0.1 on every query
    b = write(tmp_path / "b.json", "b", [0.5] * 50, [0.6] * 50)  # reasoning +0.2
    table = load().main([str(base), str(a), str(b)])
    pooled = next(r for r in table if r["model"] == "mean of 2" and r["mode"] == "reasoning")
    assert pooled["diff"] == pytest.approx(0.15) and pooled["std"] == pytest.approx(0.0707, abs=1e-3)
    assert pooled["low"] == pytest.approx(0.15) and pooled["high"] == pytest.approx(0.15)  # no spread over queries
    direct = [r for r in table if r["mode"] == "direct" and "diff" in r]
    assert all(r["diff"] == 0 for r in direct)
    assert "| mean of 2 | reasoning | 0.550 ± 0.071 | +0.150 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "comparison.json").read_text()) == table


def test_rows_without_per_query_scores_are_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps([{"system": "x (direct)", "ndcg@10": 0.5}]))
    with pytest.raises(SystemExit, match="no per_query_ndcg@10"):
        load().main([str(tmp_path / "old.json"), str(tmp_path / "old.json")])


def test_within_compares_each_file_with_its_own_direct_row(tmp_path, capsys):
    a = write(tmp_path / "a.json", "seed0", [0.5] * 40, [0.6] * 40)  # reasoning +0.1 over its own direct
    b = write(tmp_path / "b.json", "seed1", [0.3] * 40, [0.2] * 20 + [0.4] * 20)  # reasoning +0.0 over its own
    rows = json.loads(b.read_text()) + [{"system": "seed1 (turn 2 fused)", "ndcg@10": 0.35,
                                         "per_query_ndcg@10": {f"q{i}": 0.35 for i in range(40)}}]
    b.write_text(json.dumps(rows))
    table = load().main(["--within", "direct", str(a), str(b), "--output", str(tmp_path / "within.json")])
    assert [(r["model"], r["mode"]) for r in table] == [
        (str(a), "reasoning vs direct"), (str(b), "reasoning vs direct"), ("mean of 2", "reasoning vs direct"),
        (str(b), "turn 2 fused vs direct")]
    assert [r["diff"] for r in table] == pytest.approx([0.1, 0.0, 0.05, 0.05])
    assert table[2]["low"] < 0.05 < table[2]["high"]  # seed1's reasonings spread over queries
    assert "| mean of 2 | reasoning vs direct | 0.450 ± 0.212 | +0.050 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"no \(fused\) row"):
        load().main(["--within", "fused", str(a)])
    with pytest.raises(SystemExit):  # no baseline to compare with
        load().main([str(a)])


def test_a_file_with_two_models_is_compared_per_model_within_and_refused_as_a_baseline(tmp_path, capsys):
    a = json.loads(write(tmp_path / "a.json", "a", [0.5] * 30, [0.4] * 30).read_text())  # reasoning -0.1
    b = json.loads(write(tmp_path / "b.json", "b", [0.5] * 30, [0.7] * 30).read_text())  # reasoning +0.2
    bm25 = {"system": "BM25", "ndcg@10": 0.3, "per_query_ndcg@10": {f"q{i}": 0.3 for i in range(30)}}
    both = tmp_path / "both.json"
    both.write_text(json.dumps(a + b + [bm25]))
    table = load().main(["--within", "direct", str(both)])
    assert [(r["model"], r["diff"]) for r in table] == [
        (f"{both}: a", pytest.approx(-0.1)), (f"{both}: b", pytest.approx(0.2)), ("mean of 2", pytest.approx(0.05))]
    assert "each model against its own (direct) row" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds rows of 2 models"):
        load().main([str(both), str(tmp_path / "a.json")])
    with pytest.raises(SystemExit, match="two rows are 'a \\(direct\\)'"):
        (tmp_path / "twice.json").write_text(json.dumps(a + a))
        load().main(["--within", "direct", str(tmp_path / "twice.json")])


def test_against_compares_every_way_of_each_model_with_one_system_of_another_file(tmp_path, capsys):
    minilm = {"system": "all-MiniLM-L6-v2", "ndcg@10": 0.5, "per_query_ndcg@10": {f"q{i}": 0.5 for i in range(20)}}
    (tmp_path / "baselines.json").write_text(json.dumps([minilm]))
    a = write(tmp_path / "a.json", "a", [0.4] * 20, [0.6] * 20)
    b = write(tmp_path / "b.json", "b", [0.5] * 20, [0.7] * 20)
    table = load().main(["--against", "all-MiniLM-L6-v2", str(tmp_path / "baselines.json"), str(a), str(b)])
    assert [(r["model"], r["mode"], r["diff"]) for r in table] == [
        (str(a), "direct vs all-MiniLM-L6-v2", pytest.approx(-0.1)), (str(b), "direct vs all-MiniLM-L6-v2", 0.0),
        ("mean of 2", "direct vs all-MiniLM-L6-v2", pytest.approx(-0.05)),
        (str(a), "reasoning vs all-MiniLM-L6-v2", pytest.approx(0.1)), (str(b), "reasoning vs all-MiniLM-L6-v2",
                                                                        pytest.approx(0.2)),
        ("mean of 2", "reasoning vs all-MiniLM-L6-v2", pytest.approx(0.15))]
    assert "each model against all-MiniLM-L6-v2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no row 'BM25'"):
        load().main(["--against", "BM25", str(tmp_path / "baselines.json"), str(a)])


def test_main_job_files_compare_one_model_within_and_after_against_before(tmp_path, capsys):
    """sr3 train's results.json holds two models (before and after RL): --model picks one for --within, and
    --between compares them way by way in each file, pooled over files (seeds)."""
    files = []
    for seed, gain in enumerate((0.1, 0.3)):
        before = json.loads(write(tmp_path / "x.json", "SFT+RS", [0.5] * 30, [0.3] * 30).read_text())
        after = json.loads(write(tmp_path / "x.json", "SFT+RS+RL", [0.5] * 30, [0.3 + gain] * 30).read_text())
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps(before + after))
    table = load().main(["--within", "direct", "--model", "SFT+RS+RL", *map(str, files)])
    assert [(r["model"], r["diff"]) for r in table] == [
        (str(files[0]), pytest.approx(-0.1)), (str(files[1]), pytest.approx(0.1)), ("mean of 2", pytest.approx(0.0))]
    table = load().main(["--between", "SFT+RS", "SFT+RS+RL", *map(str, files)])
    assert [(r["model"], r["mode"], r["diff"]) for r in table] == [
        (str(files[0]), "direct: SFT+RS+RL vs SFT+RS", 0.0), (str(files[1]), "direct: SFT+RS+RL vs SFT+RS", 0.0),
        ("mean of 2", "direct: SFT+RS+RL vs SFT+RS", 0.0),
        (str(files[0]), "reasoning: SFT+RS+RL vs SFT+RS", pytest.approx(0.1)),
        (str(files[1]), "reasoning: SFT+RS+RL vs SFT+RS", pytest.approx(0.3)),
        ("mean of 2", "reasoning: SFT+RS+RL vs SFT+RS", pytest.approx(0.2))]
    assert "each file's SFT+RS+RL against its SFT+RS" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no model 'SFT'"):
        load().main(["--between", "SFT", "SFT+RS+RL", str(files[0])])
    with pytest.raises(SystemExit):  # --model only narrows --within
        load().main(["--model", "SFT+RS", str(files[0]), str(files[1])])
