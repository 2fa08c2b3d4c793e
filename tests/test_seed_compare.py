"""scripts/seed_compare.py: paired differences between run folders' ways, per seed and pooled over seeds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "seed_compare.py"


def load():
    spec = importlib.util.spec_from_file_location("seed_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAIRS = ["--pair", "sft:direct", "latent:latent", "--pair", "latent:reasoning", "latent:latent",
         "--pair", "sft:direct", "latent:direct"]


def write(out: Path, dataset: str, seed: int, scores: dict[tuple[str, str], list[float]]) -> None:
    rows = [{"system": f"runs/latent/{model}-{seed}/final ({way})", "dataset": dataset,
             "per_query_ndcg@10": {f"q{i}": x for i, x in enumerate(values)}}
            for (model, way), values in scores.items()]
    rows.append({"system": "BM25", "dataset": dataset, "per_query_ndcg@10": {"q0": 1.0}})  # not a model: left out
    (out / f"{dataset}-{seed}.json").write_text(json.dumps(rows))


def test_each_seed_and_the_pool_compare_the_latent_way_with_direct_and_written_reasoning(tmp_path, capsys):
    for seed, gain in ((0, 0.1), (1, 0.3)):
        for dataset in ("wordnet-revdict", "semanlink"):
            write(tmp_path, dataset, seed, {("sft", "direct"): [0.5] * 40, ("sft", "reasoning"): [0.2] * 40,
                                            ("latent", "direct"): [0.4] * 40, ("latent", "reasoning"): [0.3] * 40,
                                            ("latent", "latent"): [0.5 + gain] * 40})
    table = load().main([str(tmp_path), "--seeds", "0", "1", "--datasets", "wordnet-revdict", "semanlink", *PAIRS])
    lever = next(r for r in table if r["dataset"] == "semanlink" and r["system"] == "latent latent"
                 and r["baseline"] == "sft direct")
    assert [r["mean"] for r in lever["per_seed"]] == pytest.approx([0.1, 0.3])
    assert lever["pooled"]["mean"] == pytest.approx(0.2) and lever["pooled"]["queries"] == 40
    equal_cost = next(r for r in table if r["baseline"] == "latent reasoning" and r["dataset"] == "wordnet-revdict")
    assert equal_cost["pooled"]["mean"] == pytest.approx(0.4)
    assert len(table) == 2 * 3
    assert "| semanlink (40 queries) | latent latent - sft direct | 0.500, 0.700 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "compare.json").read_text()) == table


def test_a_missing_way_names_the_file(tmp_path):
    for dataset in ("wordnet-revdict", "semanlink"):
        write(tmp_path, dataset, 0, {("sft", "direct"): [0.5]})
    with pytest.raises(SystemExit, match=r"wordnet-revdict-0.json has no latent-SEED/... \(latent\)"):
        load().main([str(tmp_path), "--seeds", "0", "--datasets", "wordnet-revdict", *PAIRS])


def test_a_pair_that_is_not_kind_and_way_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load().main([str(tmp_path), "--seeds", "0", "--datasets", "semanlink", "--pair", "sft", "latent:latent"])
    assert "expected KIND:WAY" in capsys.readouterr().err


def test_the_files_of_several_folders_are_read_as_one(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    write(tmp_path / "a", "semanlink", 0, {("sft", "direct"): [0.5] * 10})
    write(tmp_path / "b", "semanlink", 0, {("rl", "direct"): [0.4] * 10})
    table = load().main([str(tmp_path / "a"), str(tmp_path / "b"), "--seeds", "0", "--datasets", "semanlink",
                         "--pair", "sft:direct", "rl:direct"])
    assert table[0]["pooled"]["mean"] == pytest.approx(-0.1)
    assert (tmp_path / "a" / "compare.json").exists()
