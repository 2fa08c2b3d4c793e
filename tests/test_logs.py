"""Logs a person can read: progress bars as lines when stderr is not a terminal, no DEBUG lines from
dependencies on the console, and `sr3 train`'s own log file."""

from __future__ import annotations

import io
import logging

import pytest

from sr3_agent import cli
from sr3_agent.logs import LineProgressStream, log_file, setup_logging


def test_progress_refreshes_become_lines():
    from tqdm import tqdm

    sink = io.StringIO()
    stream = LineProgressStream(sink)
    for _ in tqdm(range(5), file=stream, mininterval=0, miniters=1, desc="work", ascii=True):
        pass
    lines = sink.getvalue().splitlines()
    assert "\r" not in sink.getvalue()
    assert lines[0].startswith("work:   0%") and lines[-1].startswith("work: 100%") and len(lines) >= 5
    stream.write("a plain message\n")
    assert sink.getvalue().endswith("a plain message\n")


def test_bm25s_debug_line_stays_off_the_console(capsys, tiny_beir):
    from sr3_agent.evaluation.evaluate import bm25_run
    from sr3_env import load_dataset

    handler = setup_logging(verbose=True)
    try:
        bm25_run(load_dataset(tiny_beir))  # bm25s sets its own logger to DEBUG and logs "Building index ..."
        logging.getLogger("sr3_agent").info("an info line")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "DEBUG" not in err and "Building index" not in err
    assert "INFO sr3_agent: an info line" in err


def test_log_file_keeps_info_and_what_stopped_the_run(tmp_path):
    path = tmp_path / "out" / "train.log"
    with pytest.raises(KeyboardInterrupt):
        with log_file(path):
            logging.getLogger("sr3_agent.training.train_command").info("[sft] training")
            logging.getLogger("sr3_agent.training.train_command").debug("not kept")
            raise KeyboardInterrupt
    text = path.read_text()
    assert "INFO sr3_agent.training.train_command: [sft] training" in text and "not kept" not in text
    assert "stopped by KeyboardInterrupt" in text
    logging.getLogger("sr3_agent").info("after the block")
    assert "after the block" not in path.read_text()  # the handler is gone


def test_sr3_train_writes_train_log(tmp_path, monkeypatch):
    """The wiring of `sr3 train` (the real job runs in tests/test_pipeline.py)."""
    import sr3_agent.training.train_command as pipeline

    def fake_run_train(config):
        pipeline.announce("[sft] training, output in somewhere")
        return {"table": "| a | table |", "results": "r", "plot": "p", "seconds": {}}

    monkeypatch.setattr(pipeline, "run_train", fake_run_train)
    result = cli.train_with_log(cli.TrainConfig(output_dir=str(tmp_path / "run")))
    text = (tmp_path / "run" / "train.log").read_text()
    assert result["table"] == "| a | table |"
    assert "[sft] training, output in somewhere" in text and "| a | table |" in text


def test_long_work_shows_progress_queries_written_with_reasoning_and_each_evaluated_system(capsys, tiny_embedder,
                                                                                          tiny_beir):
    from sr3_agent.evaluation.evaluate import BM25System, DenseSystem, evaluate_systems

    tiny_embedder.progress_min_reasoning = 2
    tiny_embedder.encode_queries(["dogs", "cats", "wolves"], reasoning=True, max_new_tokens=3)
    tiny_embedder.encode_queries_auto(["dogs", "cats", "wolves"], max_new_tokens=3)
    err = capsys.readouterr().err
    assert "reasoning: " in err and "auto: " in err and "/3 [" in err  # refreshes depend on TQDM_MININTERVAL
    tiny_embedder.encode_queries(["dogs"], reasoning=True, max_new_tokens=3)  # below the threshold: no bar
    assert "reasoning" not in capsys.readouterr().err
    systems = [BM25System(), DenseSystem("tiny", tiny_embedder.encode_queries, tiny_embedder.encode_documents)]
    evaluate_systems(tiny_beir, systems)
    assert "evaluating on" in capsys.readouterr().err
