"""benchmarks/bench_serve.py and bench_serve_load.py run at a tiny size against real server processes (the tiny model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_bench(name: str, monkeypatch, tmp_path):
    """The benchmark script ``name`` as a module, with an empty cache (benchmarks import their neighbours)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_serve_runs_at_a_tiny_size(tiny_embedder, tmp_path, monkeypatch, capsys):
    bench = load_bench("bench_serve", monkeypatch, tmp_path)
    model = tiny_embedder.save_pretrained(tmp_path / "model")
    out = tmp_path / "bench_serve.json"
    result = bench.main(["--model", str(model), "--clients", "1", "3", "--requests", "6", "--reasoning-requests", "3",
                         "--max-new-tokens", "2", "--no-baseline", "--output", str(out)])
    levels = result["levels"]
    assert [(r["mode"].split()[0], r["clients"]) for r in levels] == [("direct", 1), ("direct", 3), ("reasoning", 1),
                                                                     ("reasoning", 3)]
    assert all(r["requests_per_s"] > 0 and r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] for r in levels)
    assert json.loads(out.read_text())["levels"] == levels
    assert "| direct | 3 |" in capsys.readouterr().out


def test_bench_serve_load_runs_at_a_tiny_size(tiny_embedder, tmp_path, monkeypatch, capsys):
    bench = load_bench("bench_serve_load", monkeypatch, tmp_path)
    model = tiny_embedder.save_pretrained(tmp_path / "model")
    out = tmp_path / "load.json"
    result = bench.main(["--model", str(model), "--levels", "1,64", "--seconds", "3", "--per-client", "2",
                         "--max-queue", "4", "--encoder", "hashing", "--output", str(out)])
    levels = result["levels"]
    assert [(r["route"], r["clients"]) for r in levels] == [(route, n) for route in ("/v1/embeddings", "/retrieve",
                                                                                   "/ws reset+step") for n in (1, 64)]
    for row in levels:  # every request answered, 200 or refused (429), none failed or timed out
        assert set(row["by_status"]) <= {"200", "429"} and row["by_status"].get("200", 0) >= 1
    assert any(row["by_status"].get("429") for row in levels if row["clients"] == 64)  # the 4-text queue overflowed
    assert all(check["sent"] == check["counted"] for check in result["metrics_check"].values())
    assert set(result["in_process"]) == {"/v1/embeddings", "/ws reset+step"}
    assert json.loads(out.read_text())["levels"] == levels and "| /retrieve | 64 |" in capsys.readouterr().out
