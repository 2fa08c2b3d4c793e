"""Every example runs, at a tiny budget, so examples cannot drift from the API."""

from __future__ import annotations

import ast
import importlib.util
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python block of a Markdown text, in order."""
    return [block.strip() for block in re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)]


def code_after_docstring(path: Path) -> str:
    source = path.read_text(encoding="utf-8")
    docstring = ast.parse(source).body[0]
    return "\n".join(source.splitlines()[docstring.end_lineno:]).strip()


def test_quickstart_runs_and_prints_a_reward(capsys):
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(r"nDCG@10 [01]\.\d{3}; the first relevant document is ranked \d+ of 100", out), out


def test_the_readme_quickstart_is_examples_quickstart():
    """The README's block under "Quickstart" is examples/quickstart.py's code, so the test above runs it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert python_blocks(section)[0] == code_after_docstring(EXAMPLES / "quickstart.py")


def test_docs_quickstart_runs_block_by_block(monkeypatch, tiny_embedder, capsys):
    """docs/quickstart.md: its first block is examples/quickstart.py's code, and its blocks run in order (the
    bundled model is replaced by a tiny random one: the block checks the calls, not the model)."""
    from sr3_agent import ReasoningEmbedder

    monkeypatch.setattr(ReasoningEmbedder, "from_pretrained", classmethod(lambda cls, *args, **kwargs: tiny_embedder))
    blocks = python_blocks((ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8"))
    assert blocks[0] == code_after_docstring(EXAMPLES / "quickstart.py")
    namespace: dict = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, "docs/quickstart.md", "exec"), namespace)  # noqa: S102 - the page's own code
    assert "nDCG@10" in capsys.readouterr().out


def test_own_data_writes_a_beir_folder_that_sr3_loads(tmp_path, capsys):
    from sr3_env import load_dataset

    module = load("own_data")
    result = module.main(["--output-dir", str(tmp_path / "faq"), "--encoder", "hashing"])
    folder = tmp_path / "faq"
    for split in ("train", "dev", "test"):
        assert (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    splits = result["splits"]
    queries = [set(data.query_ids) for data in splits.values()]
    assert all(queries) and not (queries[0] & queries[1] or queries[0] & queries[2] or queries[1] & queries[2])
    assert sum(map(len, queries)) == len(module.PAIRS)
    assert len(splits["test"].doc_ids) == len({answer for _, answer in module.PAIRS})  # shared answers: one document
    assert 0.0 <= result["reward"] <= 1.0
    assert f"sr3 train --dataset {folder}" in capsys.readouterr().out

    pairs = tmp_path / "pairs.csv"  # a user's CSV; its split of a question is the same as in the built-in set
    pairs.write_text("question,answer\n" + "".join(f'"{q}","{a}"\n' for q, a in module.PAIRS[:6]), encoding="utf-8")
    module.write_beir(module.read_pairs(pairs), tmp_path / "csv")
    assert load_dataset(tmp_path / "csv", split="test").query_texts == [
        q for q in splits["test"].query_texts if q in dict(module.PAIRS[:6])]
    with pytest.raises(ValueError, match="needs the columns question and answer"):
        module.read_pairs(tmp_path / "faq" / "qrels" / "test.tsv")


def test_docs_data_shows_own_data_as_it_is_and_its_reading_back_runs(tmp_path, monkeypatch, capsys):
    """docs/data.md copies examples/own_data.py's core verbatim, and its read-back block runs on what it writes."""
    import inspect

    module = load("own_data")
    page = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    for function in (module.split_of, module.write_beir):
        assert inspect.getsource(function).strip() in page, f"docs/data.md's {function.__name__} differs from the example"
    folder = module.write_beir(module.PAIRS, tmp_path / "my-faq")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):  # the page's three-line samples
        assert "\n".join((folder / name).read_text(encoding="utf-8").splitlines()[:3]) in page, name
    monkeypatch.chdir(tmp_path)
    block = next(block for block in python_blocks(page) if "load_dataset(\"my-faq\"" in block)
    exec(compile(block, "docs/data.md", "exec"), {})  # noqa: S102 - the page's own code
    assert capsys.readouterr().out.count("RetrievalDataset(name='my-faq'") == 3


def test_sb3_demo_trains_on_train_and_scores_on_test_at_a_tiny_budget(capsys):
    module = load("sb3_demo")
    results = module.main(["--encoder", "hashing", "--train-queries", "10", "--eval-queries", "8", "--timesteps", "512"])
    assert list(results) == ["random", module.DO_NOTHING, "PPO before training", "PPO after 512 steps"]
    out = capsys.readouterr().out
    assert "train: RetrievalDataset(name='python-docstrings', split='train'" in out
    assert "test: RetrievalDataset(name='python-docstrings', split='test'" in out
    assert "on 10 train queries; every policy scored on 8 test queries" in out and "| policy |" in out
    assert re.search(r"PPO ends (above|below) the do-nothing policy by \d\.\d{3} reward", out), out


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


def test_grpo_from_scratch_bumps_the_version_and_the_index_refreshes_lazily(tmp_path, tiny_embedder, capsys):
    """Each update bumps the policy's version; from the second on, the step re-encodes some rows (its top-K
    and gold) and leaves every other row stale, and the loop prints those figures."""
    model = tiny_embedder.save_pretrained(tmp_path / "tiny")
    history = load("grpo_from_scratch").main([
        "--model", str(model), "--num-queries", "8", "--num-docs", "40", "--num-updates", "3",
        "--queries-per-update", "2", "--group-size", "2", "--max-new-tokens", "6", "--top-k", "5",
        "--learning-rate", "1e-3", "--kl-coef", "0.05", "--output-dir", str(tmp_path / "run")])
    assert [row["version"] for row in history] == [1, 2, 3]
    assert [row["scored_by_version"] for row in history] == [0, 1, 2]
    assert history[0]["rows_reencoded"] == 0 and history[0]["stale_rows"] == 0  # the index was built by version 0
    for row in history[1:]:  # every row was made by an older version; the step re-encoded those that decide the ranks
        assert 0 < row["rows_reencoded"] < 40 and row["stale_rows"] == 40 - row["rows_reencoded"]
    assert history[-1]["rows_reencoded_total"] == sum(row["rows_reencoded"] for row in history)
    assert all(0.0 <= row["reward"] <= 1.0 and 1 <= row["rank"] <= 40 for row in history)
    out = capsys.readouterr().out
    for row in history:
        assert re.search(rf"^\s+{row['update']} \| .* \|\s+{row['rows_reencoded']} \|\s+{row['stale_rows']} of 40 \| "
                         rf"{row['scored_by_version']} -> {row['version']}$", out, flags=re.M), out
    assert f"re-encoded {history[-1]['rows_reencoded_total']} document rows in 3 updates" in out
    assert (tmp_path / "run" / "final" / "sr3_embedder.json").is_file()


def test_every_example_is_tested():
    tested = {"quickstart", "own_data", "sb3_demo", "embed_and_finetune", "grpo_with_trl", "grpo_with_openenv",
              "sharded_env", "export_and_serve", "grpo_from_scratch"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested
