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
