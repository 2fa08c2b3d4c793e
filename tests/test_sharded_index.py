"""The index sharded over 2 CPU processes (torch.distributed, gloo) returns exactly what the
single-process index returns on the same data: top-K rows and scores, gold ranks and scores,
re-encoding counts, and row look-ups, across steps of a changing encoder."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sr3_env.sharding import Shard, merge_top_k, shard_range

WORKER = Path(__file__).parent / "workers" / "sharded_index.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_worker(out: Path, launcher: list[str], args: list[str]) -> None:
    completed = subprocess.run([sys.executable, *launcher, str(WORKER), "--out", str(out), *args], capture_output=True,
                               text=True, timeout=300)
    if completed.returncode != 0:
        raise AssertionError(f"worker failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")


@pytest.mark.parametrize("refresh", ["lazy", "periodic", "full", "frozen"])
def test_two_process_index_equals_single_process_index(tmp_path, refresh):
    run_worker(tmp_path, ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                          "--master_port", str(free_port())], ["--refresh", refresh])
    run_worker(tmp_path, [], ["--single", "2", "--refresh", refresh])
    ranks = [pickle.loads((tmp_path / f"{r}.pkl").read_bytes()) for r in (0, 1)]
    single = pickle.loads((tmp_path / "single.pkl").read_bytes())
    assert [r[-1]["rows"] for r in ranks] == [(0, 102), (102, 203)]  # each process holds only its block
    assert [r[-1]["local_rows"] for r in ranks] == [102, 101]
    for step, expected in enumerate(single):
        got = [ranks[0][step], ranks[1][step]]
        sizes = [len(g["top_rows"]) for g in got]
        assert sizes == [5, 3]
        np.testing.assert_array_equal(np.concatenate([g["top_rows"] for g in got]), expected["top_rows"])
        np.testing.assert_allclose(np.concatenate([g["top_scores"] for g in got]), expected["top_scores"], rtol=0, atol=1e-6)
        for name in ("gold_ranks", "gold_scores"):
            sharded = [a for g in got for a in g[name]]
            assert len(sharded) == len(expected[name])
            for a, b in zip(sharded, expected[name]):
                (np.testing.assert_array_equal if name == "gold_ranks" else np.testing.assert_allclose)(a, b)
        for g in got:
            got_stats, expected_stats = dict(g["stats"]), dict(expected["stats"])
            calls = got_stats.pop("encoder_calls"), expected_stats.pop("encoder_calls")
            assert got_stats == expected_stats  # encoder calls differ: each process encodes its own rows
            assert calls[0] >= calls[1]
            np.testing.assert_array_equal(g["rows_embeddings"], expected["rows_embeddings"])
    if refresh != "frozen":
        assert single[1]["stats"]["rows_reencoded"] > 0  # the comparison covered re-encoding


def test_shard_ranges_cover_the_rows_once_in_near_equal_blocks():
    for rows, world in [(10, 3), (203, 2), (5, 5), (1000, 7)]:
        ranges = [shard_range(rows, r, world) for r in range(world)]
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        sizes = [stop - start for start, stop in ranges]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank 2 is not in a group of 2"):
        shard_range(10, 2, 2)


def test_merge_top_k_equals_top_k_of_the_whole_matrix():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 50, generator=generator)
    blocks = [(0, 17), (17, 34), (34, 50)]
    values = torch.stack([torch.topk(scores[:, a:b], 5).values for a, b in blocks])
    rows = torch.stack([torch.topk(scores[:, a:b], 5).indices + a for a, b in blocks])
    merged_values, merged_rows = merge_top_k(values, rows, 5)
    expected = torch.topk(scores, 5)
    torch.testing.assert_close(merged_values, expected.values)
    torch.testing.assert_close(merged_rows, expected.indices)


def test_a_process_group_without_torch_distributed_is_refused_with_a_fix():
    with pytest.raises(RuntimeError, match="init_process_group"):
        Shard.of(10, "world")
