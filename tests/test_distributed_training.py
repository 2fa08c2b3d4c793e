"""Data-parallel training: the pure helpers in one process, then 2 CPU processes (gloo) started by
the real ``accelerate launch``: DDP averages the gradients (the LM head's too, applied outside the
DDP forward), `sr3 sft` and `sr3 rl` keep identical weights on both processes, and the CLI runs,
writes once and resumes; so does the whole of `sr3 train` (SFT, rejection sampling, RL, the table).

Each launch takes about 8-12 s on 2 cores (mostly process start-up and imports).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_QRELS, write_beir

from sr3_agent.config import ConfigError
from sr3_agent.training.distributed import (HiddenStates, Processes, process_entropy, process_rng_states, shard_rows,
                                   start_processes)

WORKER = Path(__file__).parent / "workers" / "data_parallel.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


# -- one process ----------------------------------------------------------------------------------

def test_blocks_cover_the_batch_in_rank_order():
    rows = np.array([7, 3, 9, 1, 4])
    blocks = [shard_rows(rows, Processes(rank=r, world_size=2)) for r in (0, 1)]
    assert [b.tolist() for b in blocks] == [[7, 3, 9], [1, 4]]  # sizes differ by at most one
    assert shard_rows(rows, Processes()).tolist() == rows.tolist()  # one process takes the whole batch


def test_fewer_queries_than_processes_is_a_clear_error():
    with pytest.raises(ConfigError, match="multiple of 4"):
        shard_rows(np.arange(3), Processes(rank=0, world_size=4))


def test_one_process_keeps_its_seeds_and_collectives_are_identities():
    single = Processes()
    assert process_entropy([5, 2, 1], single) == [5, 2, 1]  # single-process runs are unchanged
    assert process_entropy([5, 2, 1], Processes(rank=1, world_size=2)) == [5, 2, 1, 1]
    assert single.mean({"a": 2.0}) == {"a": 2.0} and single.any(True) and not single.any(False)
    assert single.gather("x") == ["x"] and process_rng_states(single) == {}
    assert start_processes("cpu") == single  # no launcher: no process group, accelerate not needed


def test_the_ddp_module_gives_the_hidden_states_and_is_used_only_with_gradients(tiny_embedder):
    ids, mask = tiny_embedder.direct_batch(["a cat", "the price of tea"], tiny_embedder.prompts.query)
    plain = tiny_embedder.hidden_states(ids, mask)
    module = HiddenStates(tiny_embedder.model)
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    tiny_embedder.parallel_forward = module
    torch.testing.assert_close(tiny_embedder.hidden_states(ids, mask), plain, rtol=0, atol=0)
    with torch.no_grad():  # encoding (index refreshes, evaluation) stays outside DDP: no collective
        tiny_embedder.hidden_states(ids, mask)
    assert len(calls) == 1


def test_a_collective_rejection_search_is_joined_with_no_rows(tiny_embedder):
    """Under data parallelism the index search is collective: a process with no query to rank (none of its block
    reasons this step) still joins it, with an empty batch; in one process nothing is searched for nothing."""
    from sr3_agent.training.rejection import pick_reasonings

    calls = []

    def search(vectors, gold):
        calls.append((tuple(vectors.shape), len(gold)))
        return np.ones(len(gold))

    settings = dict(samples=2, max_new_tokens=3, temperature=1.0, min_tokens=1, max_tokens=3, rule="best")
    assert pick_reasonings(tiny_embedder, [], [], search, **settings).reasonings == [] and calls == []
    pick_reasonings(tiny_embedder, [], [], search, collective=True, **settings)
    assert calls == [((0, tiny_embedder.dim), 0)]
    pick_reasonings(tiny_embedder, ["a cat"], [np.array([0])], search, collective=True, **settings)
    assert len(calls) == 2 and calls[1][1] == calls[1][0][0]  # once per call, one gold entry per vector


# -- two processes under accelerate launch ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 ...``: on a machine without a GPU, accelerate
    starts the processes with torchrun and they join a gloo group (its multi-CPU mode)."""
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}")
    return completed


@pytest.fixture(scope="module")
def tiny_model(_tiny_embedder_session, tmp_path_factory) -> Path:
    """The tiny random-weight embedder as a folder that `from_pretrained` (and so `--model`) loads."""
    return _tiny_embedder_session.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def untied_model(_tiny_embedder_session, tmp_path_factory) -> Path:
    """The same with a separate LM head: a parameter that only the losses use, outside the DDP forward."""
    from transformers import LlamaForCausalLM

    from sr3_agent.model.embedder import ReasoningEmbedder

    config = _tiny_embedder_session.model.config.to_dict() | {"tie_word_embeddings": False}
    torch.manual_seed(1)
    model = LlamaForCausalLM(type(_tiny_embedder_session.model.config).from_dict(config)).eval()
    embedder = ReasoningEmbedder(model, _tiny_embedder_session.tokenizer, max_length=96, batch_size=4)
    return embedder.save_pretrained(tmp_path_factory.mktemp("model") / "untied")


@pytest.mark.parametrize("head", ["tied", "untied"])
def test_ddp_averages_every_gradient_including_the_lm_head(head, tiny_model, untied_model, tmp_path):
    model = tiny_model if head == "tied" else untied_model
    launch(str(WORKER), "gradients", str(model), str(tmp_path))
    ranks = [torch.load(tmp_path / f"gradients-{r}.pt") for r in (0, 1)]
    names = list(ranks[0]["averaged"])
    assert ("lm_head.weight" in names) == (head == "untied")
    for name in names:
        own = [r["own"][name] for r in ranks]
        assert not torch.allclose(own[0], own[1]), name  # the processes' own gradients differ ...
        expected = (own[0] + own[1]) / 2
        for r in ranks:  # ... and after DDP each holds their mean
            torch.testing.assert_close(r["averaged"][name], expected, rtol=1e-5, atol=1e-7, msg=name)


def _start_weights(model: Path) -> dict[str, torch.Tensor]:
    from sr3_agent.model.embedder import ReasoningEmbedder

    return ReasoningEmbedder.from_pretrained(model, device="cpu").model.state_dict()


def _assert_identical_trained_replicas(out: Path, start: dict[str, torch.Tensor], steps: int) -> None:
    ranks = [torch.load(out / f"weights-{r}.pt") for r in (0, 1)]
    assert ranks[0]["version"] == ranks[1]["version"] == steps  # one version per optimiser step, on each
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name  # bitwise the same on both processes
    assert all(not torch.equal(start[k], ranks[0]["weights"][k]) for k in start)  # and every tensor trained


def _assert_written_once(run: Path, checkpoint: str) -> None:
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event file: the main process's
    assert (run / "final" / "model.safetensors").is_file()
    state = torch.load(run / checkpoint / "state.pt", weights_only=False)
    assert len(state["process_rng"]) == 2  # each process's random streams, for --resume


def _sft_args(model: Path, data: Path, output_dir: Path, steps: int, *extra: str) -> list[str]:
    return ["--model", str(model), "--dataset", str(data), "--split", "test", "--num-queries", "none", "--corpus-docs",
            "none", "--steps", str(steps), "--batch-size", "3", "--mine-top-k", "4", "--learning-rate", "1e-2",
            "--reasoning-tokens", "4", "--reasoning-temperature", "1.0", "--output-dir", str(output_dir), *extra]


def test_sft_on_two_processes_keeps_identical_weights(tiny_model, tiny_beir, tmp_path):
    launch(str(WORKER), "sft", str(tmp_path), *_sft_args(tiny_model, tiny_beir, tmp_path / "run", 3))
    _assert_identical_trained_replicas(tmp_path, _start_weights(tiny_model), steps=3)
    _assert_written_once(tmp_path / "run", "checkpoint-0000003")
    index = torch.load(tmp_path / "run" / "checkpoint-0000003" / "state.pt", weights_only=False)["index"]
    assert index["embeddings"].shape[0] == len(index["row_versions"]) == 12  # both shards, in one piece


def test_sft_on_two_processes_resumes_exactly(tiny_model, tiny_beir, tmp_path):
    """4 steps straight = 2 steps, then --resume to 4 (each process's random stream and index shard restored)."""
    launch(str(WORKER), "sft", str(tmp_path / "a"), *_sft_args(tiny_model, tiny_beir, tmp_path / "a" / "run", 4))
    launch(str(WORKER), "sft", str(tmp_path / "b"), *_sft_args(tiny_model, tiny_beir, tmp_path / "b" / "run", 2))
    launch(str(WORKER), "sft", str(tmp_path / "b"), *_sft_args(tiny_model, tiny_beir, tmp_path / "b" / "run", 4,
                                                                 "--resume"))
    straight, resumed = (torch.load(tmp_path / run / "weights-1.pt") for run in ("a", "b"))
    assert straight["version"] == resumed["version"] == 4
    for name, value in straight["weights"].items():
        torch.testing.assert_close(resumed["weights"][name], value, rtol=0, atol=0, msg=name)


def test_rl_on_two_processes_keeps_identical_weights(tiny_model, tiny_beir, tmp_path):
    launch(str(WORKER), "rl", str(tmp_path), "--model", str(tiny_model), "--dataset", str(tiny_beir), "--split", "test",
           "--num-queries", "none", "--corpus-docs", "none", "--steps", "3", "--queries-per-step", "2",
           "--group-size", "2", "--reasoning-tokens", "4", "--top-k", "5", "--learning-rate", "1e-3",
           "--eval-every", "0", "--output-dir", str(tmp_path / "run"))
    _assert_identical_trained_replicas(tmp_path, _start_weights(tiny_model), steps=3)
    _assert_written_once(tmp_path / "run", "checkpoint-0000003")


def test_the_cli_trains_sft_then_rl_and_resumes_on_two_processes(tiny_model, tiny_beir, tmp_path):
    data = ["--dataset", str(tiny_beir), "--split", "test", "--num-queries", "none", "--corpus-docs", "none"]
    sft = launch("-m", "sr3_agent.cli", "sft", "--model", str(tiny_model), *data, "--steps", "2", "--batch-size", "2",
                 "--mine-top-k", "4", "--reasoning-tokens", "4", "--output-dir", str(tmp_path / "sft"))
    assert sft.stdout.count("saved the trained embedder") == 1  # printed by the main process only
    rl = ["rl", "--model", str(tmp_path / "sft" / "final"), *data, "--queries-per-step", "2", "--group-size", "2",
          "--reasoning-tokens", "4", "--top-k", "5", "--eval-every", "0", "--save-every", "1",
          "--output-dir", str(tmp_path / "rl")]
    launch("-m", "sr3_agent.cli", *rl, "--steps", "1")
    launch("-m", "sr3_agent.cli", *rl, "--steps", "2", "--resume")
    assert sorted(p.name for p in (tmp_path / "rl").glob("checkpoint-*")) == ["checkpoint-0000001", "checkpoint-0000002"]
    from sr3_agent.model.embedder import ReasoningEmbedder

    ReasoningEmbedder.from_pretrained(tmp_path / "rl" / "final", device="cpu")  # the final model loads


def test_sr3_train_runs_every_stage_on_two_processes_and_writes_once(tiny_model, tmp_path):
    """The main job under ``accelerate launch``: every stage trains data-parallel (rejection sampling's collective
    searches included), each stage's learning rate reaches it, the main process alone evaluates and writes, and
    --resume keeps the finished stages."""
    data = write_beir(tmp_path / "beir", qrels={"train": TINY_QRELS, "test": TINY_QRELS})
    out = tmp_path / "run"
    argv = ["-m", "sr3_agent.cli", "train", "--model", str(tiny_model), "--dataset", str(data), "--train-queries",
            "none", "--corpus-docs", "none", "--sft-steps", "2", "--sft-batch-size", "2", "--rs-steps", "1",
            "--rl-steps", "2", "--queries-per-step", "2", "--group-size", "2", "--reasoning-tokens", "4",
            "--sft-eval-every", "1", "--rs-eval-every", "1", "--rl-eval-every", "1", "--dev-fraction", "0.3",
            "--dev-queries", "none", "--dev-docs", "none", "--eval-queries", "none", "--eval-docs", "none",
            "--min-token-rate", "0", "--no-baselines", "--sft-learning-rate", "1e-3", "--rs-learning-rate", "3e-4",
            "--rl-learning-rate", "2e-4", "--keep-checkpoints", "--output-dir", str(out)]
    first = launch(*argv)
    assert first.stdout.count("sr3 train finished in") == 1 and first.stdout.count("[rs] training") == 1
    rows = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in rows][:3] == ["SFT (direct)", "SFT+RS (direct)", "SFT+RS (reasoning)"]
    assert "SFT+RS+RL (fused)" in [r["system"] for r in rows] and not any("(auto)" in r["system"] for r in rows)
    log = (out / "train.log").read_text()
    assert log.count("[sft] training") == log.count("[rl] training") == 1  # one writer
    for stage, rate in (("sft", 1e-3), ("rs", 3e-4), ("rl", 2e-4)):
        assert json.loads((out / stage / "config.json").read_text())["learning_rate"] == rate
        checkpoint = sorted((out / stage).glob("checkpoint-*"))[-1]
        _assert_written_once(out / stage, checkpoint.name)  # both processes trained it, the main one wrote it
    again = launch(*argv, "--resume")
    assert again.stdout.count("[rl] kept the finished stage") == 1 and again.stdout.count("sr3 train finished in") == 1
