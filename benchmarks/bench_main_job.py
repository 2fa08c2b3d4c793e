"""How long the main job takes a new user: a fresh clone, an empty cache, ``make demo``, timed.

1. the fp32 matrix-product rate of this machine (torch's threads), the reference every time is read against;
2. ``git clone`` of the repository's committed HEAD into a new folder, then ``make demo`` there with
   ``SR3_CACHE_DIR`` pointed at a new, empty folder (the virtual environment's setup, the model's
   conversion, every stage of ``sr3 train`` and its evaluation);
3. the rate again, and the wall time projected to a machine of ``--slow-gflops`` (the slower machines
   of this kind do about 100 GFLOP/s; the projection scales by the rate alone, which the issue's own
   two measurements suggest is optimistic: bandwidth-bound decoding slows down too).

Nothing else may run meanwhile (two heavy jobs on 2 cores slow each other several-fold). Prints a
table and writes JSON (default benchmarks/results/bench_main_job.json); ``--copy-results DIR`` copies
the run's results.json, results.md, timings.json and rl_curves.png there (docs/results/train/).

Usage: ``python benchmarks/bench_main_job.py --copy-results docs/results/train`` (about 20 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import environment, write_json
from bench_embedder import matmul_gflops

REPO = Path(__file__).resolve().parents[1]
COPIED = ("results.json", "results.md", "timings.json", "rl_curves.png")


def projected_minutes(minutes: float, gflops: float, slow_gflops: float) -> float:
    """The wall time on a machine of ``slow_gflops``, scaled by the matrix-product rate alone (pure)."""
    return minutes * gflops / slow_gflops


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(REPO), help="repository to clone (its committed HEAD)")
    parser.add_argument("--command", default="make demo", help="what a new user runs in the clone")
    parser.add_argument("--run-dir", default="runs/train", help="the command's output folder, inside the clone")
    parser.add_argument("--workdir", default=None, help="where the clone and the cache go (default: a new temporary folder, removed after)")
    parser.add_argument("--target-minutes", type=float, default=30.0)
    parser.add_argument("--slow-gflops", type=float, default=100.0, help="fp32 matmul rate of the slower machines")
    parser.add_argument("--copy-results", default=None, help="copy the run's results and timings here")
    parser.add_argument("--output", default=str(REPO / "benchmarks/results/bench_main_job.json"))
    args = parser.parse_args(argv)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sr3-main-job-"))
    clone, cache = work / "clone", work / "cache"
    if clone.exists() or cache.exists():
        raise SystemExit(f"{work} already holds clone/ or cache/: give an empty --workdir (the job must start fresh).")
    before = matmul_gflops()
    commit = subprocess.run(["git", "-C", args.repo, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    start = time.perf_counter()
    subprocess.run(["git", "clone", "--quiet", args.repo, str(clone)], check=True)
    cache.mkdir(parents=True)
    log = work / "main_job.log"
    with open(log, "w") as handle:
        code = subprocess.run(args.command, shell=True, cwd=clone, env={**os.environ, "SR3_CACHE_DIR": str(cache)},
                              stdout=handle, stderr=subprocess.STDOUT).returncode
    minutes = (time.perf_counter() - start) / 60
    after = matmul_gflops()
    if code != 0:
        raise SystemExit(f"`{args.command}` failed (exit {code}) after {minutes:.1f} min; its output: {log}")
    run = clone / args.run_dir
    stages = json.loads((run / "timings.json").read_text()) if (run / "timings.json").is_file() else {}
    gflops = max(before, after)  # the faster reading: the projection errs long, as a target should
    projected = projected_minutes(minutes, gflops, args.slow_gflops)
    result = {"environment": environment(dtype="fp32"), "commit": commit, "command": args.command,
              "matmul_gflops_before": round(before, 1), "matmul_gflops_after": round(after, 1),
              "wall_seconds": round(minutes * 60, 1), "wall_minutes": round(minutes, 2), "stage_minutes": {k: round(v / 60, 2) for k, v in stages.items()},
              "setup_and_other_minutes": round(minutes - sum(stages.values()) / 60, 2),
              "slow_gflops": args.slow_gflops, "projected_minutes_on_slow": round(projected, 1),
              "target_minutes": args.target_minutes, "within_target": projected <= args.target_minutes}
    rows = [("fresh clone + `" + args.command + "`", f"{minutes:.1f}"),
            *[(f"  {name}", f"{value / 60:.1f}") for name, value in stages.items()],
            ("  setup and the rest", f"{result['setup_and_other_minutes']:.1f}"),
            (f"projected at {args.slow_gflops:.0f} GFLOP/s (x {gflops:.0f}/{args.slow_gflops:.0f})", f"{projected:.1f}"),
            ("target on the slower machines", f"{args.target_minutes:.0f}")]
    print(f"commit {commit[:10]}; fp32 matmul {before:.0f} GFLOP/s before, {after:.0f} after\n")
    print("| | minutes |\n|---|---:|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows))
    if args.copy_results:
        target = Path(args.copy_results)
        target.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
    write_json(args.output, result)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
