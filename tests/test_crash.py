"""Nothing lost: the real `sr3 sft` / `sr3 rl` / `sr3 train` commands (a tiny model, a few steps) are
SIGKILLed at several points, including in the middle of a checkpoint write, stopped with SIGTERM,
run twice into one folder, and given a full disk or a bad model or dataset. After a kill,
``--resume`` must end with final weights bitwise equal to an uninterrupted run.

Kill points: ``mid-write`` (half of state.pt written), ``before-rename`` (the new checkpoint complete
and verified, not yet in place), ``before-prune`` (in place, its predecessors not yet removed) are
reached through ``SR3_KILL_AT`` (the process SIGKILLs itself there); ``between-steps`` is a SIGKILL
from outside as soon as the first checkpoint exists. One case runs in the default suite (about 25 s
on 2 cores); the rest are marked slow.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sr3_agent.training.checkpoint import list_checkpoints, verify_checkpoint

DATA = ["--dataset", "semanlink", "--split", "test", "--num-queries", "8", "--corpus-docs", "30", "--device", "cpu"]
ARGS = {
    "sft": [*DATA, "--batch-size", "4", "--reasoning-tokens", "4", "--save-every", "2"],
    "rl": [*DATA, "--queries-per-step", "2", "--group-size", "2", "--reasoning-tokens", "4", "--top-k", "5",
           "--eval-every", "0", "--save-every", "2"],
}
STEPS = 6


@pytest.fixture(scope="module")
def tiny_model(_tiny_embedder_session, tmp_path_factory) -> Path:
    return _tiny_embedder_session.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def sr3(*args: str, kill_at: str | None = None, file_size_limit: int | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("SR3_KILL_AT", None)
    if kill_at:
        env["SR3_KILL_AT"] = kill_at

    def limit() -> None:  # in the child: a "disk" that holds no file larger than the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.Popen([sys.executable, "-m", "sr3_agent.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=limit if file_size_limit else None, **popen)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def run(*args: str, **kwargs) -> tuple[int, str, str]:
    return finish(sr3(*args, **kwargs))


def train_args(command: str, model: Path, out: Path, *extra: str) -> list[str]:
    return [command, "--model", str(model), *ARGS[command], "--steps", str(STEPS), "--output-dir", str(out), *extra]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "final" / "model.safetensors")


@pytest.fixture(scope="module")
def straight(tiny_model, tmp_path_factory):
    """The uninterrupted runs' final weights, made once per command."""
    made = {}

    def get(command: str) -> dict[str, torch.Tensor]:
        if command not in made:
            out = tmp_path_factory.mktemp(f"straight-{command}")
            code, _, err = run(*train_args(command, tiny_model, out))
            assert code == 0, err[-3000:]
            made[command] = final_weights(out)
        return made[command]

    return get


def kill_then_resume(command: str, point: str, model: Path, out: Path) -> None:
    if point == "between-steps":  # SIGKILL from outside as soon as the first checkpoint is in place
        process = sr3(*train_args(command, model, out))
        deadline = time.monotonic() + 120
        while not list_checkpoints(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        code, _, _ = finish(process)
        assert code == -signal.SIGKILL  # killed before it finished
    else:
        code, _, err = run(*train_args(command, model, out), kill_at=f"{point}@4")
        assert code == -signal.SIGKILL, err[-3000:]  # it died where it was told to
        assert not (out / "final").exists()
    for folder in list_checkpoints(out):
        assert verify_checkpoint(folder) is None  # whatever is listed is intact
    code, out_text, err = run(*train_args(command, model, out, "--resume"))
    assert code == 0, err[-3000:]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_sigkill_during_a_checkpoint_write_then_resume_equals_a_straight_run(tiny_model, straight, tmp_path):
    kill_then_resume("sft", "mid-write", tiny_model, tmp_path / "run")
    assert_bitwise_equal(final_weights(tmp_path / "run"), straight("sft"))
    assert not list((tmp_path / "run").glob(".*.partial"))  # the half-written folder was cleared by the next save


@pytest.mark.slow
@pytest.mark.parametrize("command, point", [
    ("sft", "between-steps"), ("sft", "before-rename"), ("sft", "before-prune"),
    ("rl", "between-steps"), ("rl", "mid-write"), ("rl", "before-rename"), ("rl", "before-prune"),
])
def test_sigkill_then_resume_equals_a_straight_run(command, point, tiny_model, straight, tmp_path):
    kill_then_resume(command, point, tiny_model, tmp_path / "run")
    assert_bitwise_equal(final_weights(tmp_path / "run"), straight(command))


def wait_for_training(process: subprocess.Popen, out: Path) -> None:
    """Until the loop runs (the TensorBoard folder is made just before it), then a little longer."""
    deadline = time.monotonic() + 120
    while not (out / "tensorboard").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)


@pytest.mark.parametrize("command", ["sft", pytest.param("rl", marks=pytest.mark.slow)])
def test_sigterm_finishes_the_step_saves_and_says_how_to_resume(command, tiny_model, tmp_path):
    out = tmp_path / "run"
    process = sr3(command, "--model", str(tiny_model), *ARGS[command], "--steps", "500", "--save-every", "1000",
                  "--output-dir", str(out))
    wait_for_training(process, out)
    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "SIGTERM: finishing this step" in stderr and f"sr3 {command} --resume" in stdout
    [checkpoint] = list_checkpoints(out)
    assert 0 < int(checkpoint.name.split("-")[1]) < 500 and verify_checkpoint(checkpoint) is None
    assert not (out / "final").exists()


@pytest.mark.slow
def test_sigterm_stops_sr3_train_with_a_checkpoint_and_the_resume_command(tiny_model, tmp_path):
    out = tmp_path / "train"
    args = ["train", "--model", str(tiny_model), "--train-queries", "8", "--corpus-docs", "30", "--sft-steps", "400",
            "--sft-batch-size", "4", "--reasoning-tokens", "4", "--rl-steps", "1", "--device", "cpu", "--output-dir", str(out)]
    process = sr3(*args)
    wait_for_training(process, out / "sft")
    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "sr3 train --resume" in stdout and len(list_checkpoints(out / "sft")) == 1


@pytest.mark.slow  # the same refusal, in-process: tests/test_checkpoint.py
def test_a_second_run_into_the_folder_is_refused_while_the_first_runs(tiny_model, tmp_path):
    out = tmp_path / "run"
    first = sr3("sft", "--model", str(tiny_model), *ARGS["sft"], "--steps", "500", "--output-dir", str(out))
    try:
        wait_for_training(first, out)
        start = time.monotonic()
        code, _, stderr = run("sft", "--model", str(tiny_model), *ARGS["sft"], "--steps", "500", "--resume",
                              "--output-dir", str(out))
        assert code == 2 and f"Another run is writing into {out}: pid {first.pid}" in stderr
        assert time.monotonic() - start < 30  # refused before any model or data is loaded (mostly imports)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


@pytest.mark.slow
def test_a_disk_that_fills_during_a_checkpoint_loses_nothing(tiny_model, straight, tmp_path):
    out = tmp_path / "run"
    sft = ["sft", "--model", str(tiny_model), *ARGS["sft"], "--output-dir", str(out)]
    code, _, err = run(*sft, "--steps", "2")  # checkpoint-2 (the learning-rate warm-up is 1 step for both lengths)
    assert code == 0, err[-3000:]
    code, stdout, stderr = run(*sft, "--steps", str(STEPS), "--resume", file_size_limit=1_000_000)  # state.pt: ~19 MB
    assert code == 2 and "Could not write the checkpoint of step 4" in stderr and "File too large" in stderr
    assert "checkpoint-0000002 are intact" in stderr and "Traceback" not in stderr
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-0000002"] and not list(out.glob(".*.partial"))
    code, _, err = run(*sft, "--steps", str(STEPS), "--resume")  # space again: continue
    assert code == 0, err[-3000:]
    assert_bitwise_equal(final_weights(out), straight("sft"))


@pytest.mark.parametrize("case, expected", [
    ("missing model folder", "No model folder"),
    ("not a model folder", "holds no config.json"),
    ("not a causal LM", "not a causal language model"),
    ("dataset typo", "Did you mean 'wordnet-revdict'"),
    ("output folder not writable", "Cannot write to the output folder"),
])
def test_resource_and_name_errors_are_one_clear_line(case, expected, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    (tmp_path / "a-file").write_text("")
    model, dataset, out = str(tmp_path / "nowhere" / "model"), "semanlink", str(tmp_path / "run")
    if case == "not a model folder":
        model = str(tmp_path / "empty")
    elif case == "not a causal LM":
        model = str(tmp_path / "encoder")
    elif case == "dataset typo":
        dataset = "wordnet-revdic"
    elif case == "output folder not writable":
        out = str(tmp_path / "a-file" / "run")
    code, _, stderr = run("sft", "--model", model, "--dataset", dataset, "--split", "test", "--output-dir", out)
    assert code == 2 and expected in stderr and "Traceback" not in stderr, stderr[-3000:]


@pytest.mark.slow
def test_sigterm_under_accelerate_stops_every_process_after_the_same_step(tiny_model, tmp_path):
    """A scheduler's SIGTERM reaches the whole job (launcher and both workers; torchrun forwards it a
    second time): each process finishes the same step, the checkpoint holds both processes' random
    states, and nothing is left half-written."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "run"
    command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(port), "-m", "sr3_agent.cli", "sft", "--model", str(tiny_model), *ARGS["sft"], "--steps", "500",
               "--save-every", "1000", "--output-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    wait_for_training(process, out)
    os.killpg(process.pid, signal.SIGTERM)  # like Slurm: every process of the job
    _, stdout, stderr = finish(process)
    [checkpoint] = list_checkpoints(out)
    assert verify_checkpoint(checkpoint) is None, stderr[-3000:]
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert len(state["process_rng"]) == 2 and state["step"] == int(checkpoint.name.split("-")[1])
    assert stdout.count("sr3 sft --resume") >= 1 and not (out / "final").exists()
    assert not list(out.glob(".*.partial"))
