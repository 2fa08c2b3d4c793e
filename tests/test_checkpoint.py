"""Checkpoints that can be trusted, SIGTERM, one run per output folder (docs/reliability.md).

Small real states, real files, real signals and real processes (a second process holds a lock, a
process with a file-size limit fills its "disk"); the crash-and-resume tests of the commands
themselves are in tests/test_crash.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sr3_agent.training.checkpoint import (CHECKSUM_FILE, STATE_FILE, CheckpointError, graceful_interrupt, list_checkpoints,
                                  load_latest, save_checkpoint, stop_exit_code, verify_checkpoint)
from sr3_agent.training.runlock import OWNER_FILE, OutputDirError, RunLockedError, run_lock


def small_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "version": seed,
            "index": {"embeddings": torch.randn(6, 3), "row_versions": np.arange(6, dtype=np.int64) + seed}}


def test_a_checkpoint_carries_its_size_and_sha256_and_loads_with_weights_only(tmp_path):
    folder = save_checkpoint(tmp_path, 3, small_state())
    record = json.loads((folder / CHECKSUM_FILE).read_text())
    data = (folder / STATE_FILE).read_bytes()
    assert record["size"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest() and record["step"] == 3
    assert verify_checkpoint(folder) is None
    raw = torch.load(folder / STATE_FILE, weights_only=True)  # plain data and tensors only: no allow-list needed
    assert torch.equal(raw["index"]["row_versions"], torch.arange(6))
    state = load_latest(tmp_path)
    assert state["step"] == 3 and np.array_equal(np.asarray(state["index"]["row_versions"]), np.arange(6))


def test_random_states_come_back_exactly(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.standard_normal(), torch.rand(1)  # a gaussian left cached inside numpy's state
    save_checkpoint(tmp_path, 1, small_state())
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_latest(tmp_path)
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == expected


def test_the_index_state_of_the_trainers_loads_under_weights_only(tmp_path):
    from sr3_agent.training.parts import index_state
    from sr3_env import HashingEncoder, LazyIndex

    encoder = HashingEncoder(dim=8)
    index = LazyIndex([f"document {i}" for i in range(10)], encoder)
    encoder.reseed(5)
    index.refresh_rows([1, 4])  # rows of two versions
    save_checkpoint(tmp_path, 1, {"index": index_state(index)})
    saved = load_latest(tmp_path)["index"]
    restored = LazyIndex(index.texts, encoder, embeddings=saved["embeddings"])
    restored.row_versions[:] = saved["row_versions"]  # what sr3_agent.training.training_index does
    assert restored.row_versions.tolist() == index.row_versions.tolist()
    assert torch.equal(restored.embeddings, index.embeddings)


def test_the_predecessor_is_kept_and_older_ones_are_removed(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, small_state(step))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000002", "checkpoint-0000003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0000002", "checkpoint-0000003"]  # no leftovers


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "one byte flipped":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "checksum file garbled":
        (path.parent / CHECKSUM_FILE).write_text("{not json")


@pytest.mark.parametrize("how", ["truncated", "one byte flipped", "emptied", "checksum file garbled"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, how):
    save_checkpoint(tmp_path, 1, small_state(1))
    save_checkpoint(tmp_path, 2, small_state(2))
    _damage(tmp_path / "checkpoint-0000002" / STATE_FILE, how)
    with caplog.at_level(logging.WARNING, logger="sr3_agent.training.checkpoint"):
        state = load_latest(tmp_path)
    assert state["step"] == 1 and state["version"] == 1
    assert "checkpoint-0000002" in caplog.text and "damaged" in caplog.text
    # set aside (kept for inspection), so that later saves and pruning never count it
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000001"]
    assert (tmp_path / "damaged-checkpoint-0000002" / STATE_FILE).is_file()


def test_with_no_intact_checkpoint_the_error_names_the_damaged_files(tmp_path):
    save_checkpoint(tmp_path, 1, small_state(1))
    _damage(tmp_path / "checkpoint-0000001" / STATE_FILE, "truncated")
    with pytest.raises(CheckpointError, match=r"checkpoint-0000001.*truncated.*without --resume"):
        load_latest(tmp_path)
    assert list_checkpoints(tmp_path)  # left in place for the user to look at


class RunsCode:
    """What a malicious checkpoint holds: an object whose unpickling calls a function."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "the-code-ran"
    folder = tmp_path / "run" / "checkpoint-0000001"
    folder.mkdir(parents=True)
    torch.save({"step": 1, "rng": {}, "model": RunsCode(marker)}, folder / STATE_FILE)
    data = (folder / STATE_FILE).read_bytes()  # with a valid checksum: whoever wrote it could write that too
    (folder / CHECKSUM_FILE).write_text(json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_latest(tmp_path / "run")
    assert not marker.exists()


def test_a_checkpoint_written_by_an_earlier_sr3_still_loads(tmp_path):
    """Before checksums, the random states held numpy arrays and there was no checksum.json."""
    folder = tmp_path / "checkpoint-0000004"
    folder.mkdir()
    np.random.seed(5)
    legacy_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(), "cuda": None}
    expected = np.random.standard_normal(2).tolist()
    torch.save({"step": 4, "rng": legacy_rng, "index": {"row_versions": np.arange(3)}}, folder / STATE_FILE)
    state = load_latest(tmp_path)
    assert state["step"] == 4 and np.random.standard_normal(2).tolist() == expected


_FILL_THE_DISK = textwrap.dedent("""
    import resource, signal, sys
    import torch
    from sr3_agent.training.checkpoint import CheckpointError, save_checkpoint
    out = sys.argv[1]
    save_checkpoint(out, 1, {"weights": torch.zeros(1000)})               # about 5 kB: fits
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)                        # a write past the limit raises instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))         # files of at most 200 kB: a full disk
    try:
        save_checkpoint(out, 2, {"weights": torch.zeros(1_000_000)})      # 4 MB: does not fit
    except CheckpointError as error:
        print(error)
        sys.exit(3)
""")


def test_a_checkpoint_write_that_fills_the_disk_is_a_clear_error_and_loses_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-c", _FILL_THE_DISK, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    message = done.stdout
    assert "step 2" in message and "File too large" in message and "checkpoint-0000001 are intact" in message
    assert "--resume" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0000001"]  # no partial folder left behind
    assert verify_checkpoint(tmp_path / "checkpoint-0000001") is None and load_latest(tmp_path)["step"] == 1


def test_sigterm_is_a_first_ctrl_c():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with graceful_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM  # noted, not fatal: the loop finishes its step
        assert stop_exit_code() == 128 + signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # the same SIGTERM forwarded by a launcher (torchrun): still finishing
        assert stop.requested and stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after it aborts at once
    assert {s: signal.getsignal(s) for s in before} == before  # the caller's handlers are back


# -- one run per output folder ------------------------------------------------------------------------

_HOLD = "import sys, time; from sr3_agent.training.runlock import run_lock\nwith run_lock(sys.argv[1], main=True):\n" \
        "    print('held', flush=True)\n    time.sleep(120)\n"


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock of tmp_path/run (killed with SIGKILL at the end)."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_run_into_a_folder_is_refused_at_once_naming_the_first(holder, tmp_path):
    start = time.perf_counter()
    with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on .*running `-c") as refused:
        with run_lock(tmp_path / "run", main=True):
            pass
    assert time.perf_counter() - start < 2
    assert "--output-dir" in str(refused.value)


def test_a_killed_run_leaves_no_lock_behind(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / OWNER_FILE).is_file()  # its details are stale, not its lock
    with run_lock(tmp_path / "run", main=True):
        assert json.loads((tmp_path / "run" / OWNER_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run" / OWNER_FILE).exists()


def test_only_the_main_process_takes_the_lock(holder, tmp_path):
    with run_lock(tmp_path / "run", main=False) as path:  # another rank of a data-parallel run
        assert path is None


def test_the_trainers_take_the_lock(holder, tmp_path):
    from sr3_agent.config import RLConfig, SFTConfig
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft

    for train, config in ((train_sft, SFTConfig), (train_rl, RLConfig)):
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            train(config(output_dir=str(tmp_path / "run"), resume=True))  # refused before anything is loaded


def test_an_output_folder_that_cannot_be_written_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("in the way")
    with pytest.raises(OutputDirError, match=r"Cannot write to the output folder .*a-file/run.*--output-dir"):
        with run_lock(tmp_path / "a-file" / "run", main=True):
            pass
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "read-only").mkdir(mode=0o555)
        with pytest.raises(OutputDirError, match="Permission denied"):
            with run_lock(tmp_path / "read-only", main=True):
                pass
