"""scripts/show_reasonings.py: a model's reasonings beside the ranks they gave, on a tiny model and BEIR folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "show_reasonings.py"


def test_show_reasonings_ranks_every_way_and_picks_the_extremes(tiny_embedder, tiny_beir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("show_reasonings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny_embedder.save_pretrained(tmp_path / "model")
    rows = module.main([str(tmp_path / "model"), "--dataset", str(tiny_beir), "--num-queries", "none",
                        "--corpus-docs", "none", "--max-new-tokens", "4", "--show", "2",
                        "--output", str(tmp_path / "rows.json")])
    assert len(rows) == 3 and json.loads((tmp_path / "rows.json").read_text()) == rows
    for row in rows:
        assert all(1 <= row[f"rank_{way}"] <= 12 for way in ("direct", "reasoning", "fused"))
    table = capsys.readouterr().out
    assert table.count("\n| ") == 3  # the header and the two picked rows
