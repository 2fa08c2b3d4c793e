"""Training throughput of the real SFT and RL loops (`train_sft`, `train_rl`): seconds per step, tokens per second, peak memory.

Each job runs in a fresh Python process (so its peak memory is its own): it loads the model
(default: the bundled SmolLM2-135M-Instruct) in the chosen dtype on the chosen device and runs the
unmodified loop for a few steps on the main job's data (``sr3 train`` defaults: 1,000 training
queries of wordnet-revdict and a 1,000-document index). Nothing in the loops is re-implemented; the
child only observes them:

- **step boundaries**: ``ReasoningEmbedder.bump_version``, which the loops' optimiser calls after
  every ``optimizer.step()``. Seconds per step are the times between consecutive optimiser steps,
  so step 1 (warm-up, and the only step whose index is still fresh) is left out. Checkpoints and
  held-out evaluations are kept out of the timed steps (``save_every`` = steps, ``eval_every`` = 0).
- **paths**: each job runs once per ``--paths`` entry: ``prefix`` (the default embedder: shared prompt
  prefixes reused, each RL prompt computed once for its G samples, embeddings read from the
  generation's cache) and ``plain`` (``ReasoningEmbedder.reuse_prefix = False``: every prompt computed
  whole, a second pass after reasoning), so the two are measured side by side in one run.
- **tokens**: ``ReasoningEmbedder.hidden_states`` (forward passes over whole sequences), the decoder
  steps that continue a key/value cache (``continue_forward``: the new tokens only) and
  ``generate_reasoning`` (every sampled reasoning) are wrapped to count the non-padding tokens
  computed (a shared prefix, computed once per model version, is not counted):
    * ``grad tokens``: tokens of forward passes run with gradients (the ones backward goes through:
      SFT queries, positives and negatives; RL rollouts);
    * ``no-grad tokens``: tokens of forward passes without gradients (the index re-encoding stale
      documents, the RL reference model);
    * ``generated tokens``: reasoning tokens sampled and kept (up to and including an embed token
      the model wrote itself; decoding steps spent on padding after a sequence ended, and the
      prompts' prefill, are not counted);
  ``grad tok/s`` = grad tokens per step / seconds per step; ``all tok/s`` counts all three.
- **memory**: the child's peak resident set size (``ru_maxrss``: model, data, index, optimiser
  state, activations, Python), its RSS right after loading the model, and on CUDA
  ``torch.cuda.max_memory_allocated`` during training (the weights included).
- **phases**: the ``time/*`` scalars the loops log to TensorBoard (docs/metrics.md), averaged over
  the same steps.

Usage: ``python benchmarks/bench_training.py`` (CPU, fp32; about 3 min on 2 cores), or
``--device cuda`` (bf16 mixed precision by default there; ``--precision fp32`` to turn it off). ``--quick`` only checks that the script works. Prints Markdown
tables and writes JSON (default benchmarks/results/bench_training.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, write_json

JOBS = ("sft", "rl")
PATHS = ("plain", "prefix")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PHASES = {"sft": ("time/mining_s", "time/step_s", "index/rows_reencoded"),
          "rl": ("time/generation_s", "time/encoding_s", "time/scoring_s", "time/update_s", "index/rows_reencoded")}
QUICK = ["--sft-steps", "2", "--sft-batch", "4", "--rl-steps", "2", "--rl-queries", "2", "--group-size", "2",
         "--reasoning-tokens", "4", "--queries", "16", "--corpus-docs", "32"]


# -- the child: one job, observed ------------------------------------------------------------------

def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Meter:
    """Counts tokens through the embedder's forward passes and generations, and snapshots the counts
    and the clock at every optimiser step (by wrapping class methods, for every instance)."""

    KINDS = ("grad_tokens", "nograd_tokens", "generated_tokens")

    def __init__(self, embedder_class: type) -> None:
        self.pending: dict[str, list[torch.Tensor]] = {kind: [] for kind in self.KINDS}
        self.totals = dict.fromkeys(self.KINDS, 0)
        self.snapshots: list[dict] = []  # one per optimiser step
        meter, hidden_states, generate, bump = (self, embedder_class.hidden_states, embedder_class.generate_reasoning,
                                                embedder_class.bump_version)

        def counted_hidden_states(embedder, input_ids, attention_mask):
            kind = "grad_tokens" if torch.is_grad_enabled() else "nograd_tokens"
            meter.pending[kind].append(attention_mask.sum())  # summed at the step's end: no device sync here
            return hidden_states(embedder, input_ids, attention_mask)

        def counted_generate(embedder, *args, **kwargs):
            rollout = generate(embedder, *args, **kwargs)
            meter.pending["generated_tokens"].append(rollout.reasoning_mask.sum())
            return rollout

        def counted_bump(embedder):
            bump(embedder)
            meter.snapshot()

        from sr3_agent.model import generation, prefix_reuse  # the modules that continue caches

        continue_forward = prefix_reuse.continue_forward

        def counted_continue_forward(decoder, input_ids, attention_mask, position_ids, cache):
            kind = "grad_tokens" if torch.is_grad_enabled() else "nograd_tokens"
            meter.pending[kind].append(attention_mask[:, -input_ids.shape[1]:].sum())
            return continue_forward(decoder, input_ids, attention_mask, position_ids, cache)

        embedder_class.hidden_states = counted_hidden_states
        embedder_class.generate_reasoning = counted_generate
        embedder_class.bump_version = counted_bump
        prefix_reuse.continue_forward = generation.continue_forward = counted_continue_forward

    def snapshot(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        for kind, values in self.pending.items():
            self.totals[kind] += int(sum(int(v) for v in values))
            values.clear()
        self.snapshots.append({"time": time.perf_counter(), **self.totals})


def per_step(snapshots: list[dict]) -> list[dict]:
    """Seconds and token counts of steps 2.. (differences of consecutive optimiser-step snapshots)."""
    return [{"seconds": b["time"] - a["time"], **{kind: b[kind] - a[kind] for kind in Meter.KINDS}}
            for a, b in zip(snapshots, snapshots[1:])]


def run_job(args: argparse.Namespace) -> dict:
    """Run one loop as configured, observed by a `Meter`; the result as a dict."""
    from sr3_agent import ReasoningEmbedder
    from sr3_agent.config import RLConfig, SFTConfig
    from sr3_agent.training.train_command import read_scalars
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft

    output_dir = Path(args.work_dir) / f"{args.job}-{args.path}"
    dtype = DTYPES[args.dtype]
    common = {"dataset": args.dataset, "num_queries": args.queries, "corpus_docs": args.corpus_docs,
              "seed": args.seed, "output_dir": str(output_dir), "device": args.device, "precision": args.precision}
    if args.job == "sft":
        config = SFTConfig(model=args.model, steps=args.sft_steps, batch_size=args.sft_batch, save_every=args.sft_steps,
                           reasoning_tokens=args.reasoning_tokens, **common)
        model = args.model
    else:
        model = args.rl_model or args.model
        config = RLConfig(model=model, steps=args.rl_steps, queries_per_step=args.rl_queries, group_size=args.group_size,
                          reasoning_tokens=args.reasoning_tokens, eval_every=0, save_every=args.rl_steps, **common)
    ReasoningEmbedder.reuse_prefix = args.path != "plain"
    embedder = ReasoningEmbedder.from_pretrained(model, device=args.device, dtype=dtype)
    meter = Meter(ReasoningEmbedder)
    rss_loaded = rss_mib()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    if args.job == "sft":
        train_sft(config, embedder=embedder, progress=False)
    else:
        train_rl(config, policy=embedder, progress=False)
    steps = per_step(meter.snapshots)
    scalars = read_scalars(output_dir / "tensorboard", tags=PHASES[args.job])
    result = {
        "job": args.job, "path": args.path, "model": embedder.name, "device": args.device, "dtype": args.dtype, "precision": args.precision,
        "parameters": sum(p.numel() for p in embedder.model.parameters()),
        "config": {key: value for key, value in vars(config).items() if key != "output_dir"},
        "steps_run": len(meter.snapshots), "steps_timed": len(steps), "run_s": time.perf_counter() - start,
        "per_step": steps, "tensorboard": {tag: [v for step, v in points if step > 1] for tag, points in scalars.items()},
        "rss_after_model_load_mib": rss_loaded,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
    if args.device.startswith("cuda"):
        result["cuda_after_model_load_mib"] = cuda_before / 2**20
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name()
    return result


# -- the parent: one child per job, then the tables ----------------------------------------------

def summarise(job: dict) -> dict:
    """Means over the timed steps (pure)."""
    steps = job["per_step"]
    if not steps:
        raise SystemExit(f"{job['job']}: {job['steps_run']} optimiser step(s) ran; at least 2 are needed "
                         "(the first is left out as warm-up).")
    seconds = float(np.mean([s["seconds"] for s in steps]))
    tokens = {kind: float(np.mean([s[kind] for s in steps])) for kind in Meter.KINDS}
    return {"s_per_step": seconds, "s_per_step_median": float(np.median([s["seconds"] for s in steps])),
            **{f"{kind}_per_step": value for kind, value in tokens.items()},
            "grad_tokens_per_s": tokens["grad_tokens"] / seconds, "all_tokens_per_s": sum(tokens.values()) / seconds,
            "tensorboard_means": {tag: float(np.mean(values)) for tag, values in job["tensorboard"].items() if values}}


def child_command(args: argparse.Namespace, job: str, path: str, work_dir: str, result: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--job", job, "--path", path, "--work-dir", work_dir,
               "--result", str(result)]
    for name in ("model", "rl_model", "dataset", "queries", "corpus_docs", "sft_steps", "sft_batch", "rl_steps",
                 "rl_queries", "group_size", "reasoning_tokens", "device", "dtype", "precision", "seed"):
        value = getattr(args, name)
        if value is not None or name in ("queries", "corpus_docs"):  # None there means 'all', not 'the default'
            command += ["--" + name.replace("_", "-"), "none" if value is None else str(value)]
    return command


def report(results: dict) -> None:
    env, jobs = results["environment"], results["jobs"]
    first = next(iter(jobs.values()))
    print(f"\n{first['model']} ({first['parameters'] / 1e6:.0f}M parameters), {first['device']}, {first['dtype']} weights, precision {first['precision']} | "
          f"torch {env['torch']}, {env['threads']} threads, {env.get('gpu') or env['cpu']}\n")
    print("| job (path) | batch | steps timed | s/step (mean) | median | grad tokens/step | grad tok/s | no-grad tokens/step "
          "| generated tokens/step | all tok/s | peak RSS MiB | RSS after model load MiB | peak CUDA MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, job in jobs.items():
        s, c = job["summary"], job["config"]
        batch = f"{c['batch_size']} queries" if job["job"] == "sft" else f"{c['queries_per_step']}×{c['group_size']} rollouts"
        cuda = f"{job['cuda_peak_mib']:.0f}" if "cuda_peak_mib" in job else "–"
        print(f"| {name} | {batch} | {job['steps_timed']} | {s['s_per_step']:.2f} | {s['s_per_step_median']:.2f} | "
              f"{s['grad_tokens_per_step']:.0f} | {s['grad_tokens_per_s']:.0f} | {s['nograd_tokens_per_step']:.0f} | "
              f"{s['generated_tokens_per_step']:.0f} | {s['all_tokens_per_s']:.0f} | {job['peak_rss_mib']:.0f} | "
              f"{job['rss_after_model_load_mib']:.0f} | {cuda} |")
    print("\ns/step: time between consecutive optimiser steps, step 1 left out. Tokens are non-padding tokens: grad = "
          "forward passes with gradients (what backward goes through); no-grad = forward passes without (index "
          "re-encoding, RL reference model); generated = sampled reasoning tokens kept. all tok/s counts the three.")
    print("\nPer-phase times the loops log to TensorBoard (mean over the same steps; docs/metrics.md):\n")
    print("| job (path) | key | mean |")
    print("|---|---|---:|")
    for name, job in jobs.items():
        for tag, value in job["summary"]["tensorboard_means"].items():
            print(f"| {name} | `{tag}` | {value:.0f} |" if tag.startswith("index/") else f"| {name} | `{tag}` | {value:.2f} s |")


def report_speedups(jobs: dict) -> None:
    """Seconds per step of each job's plain path over its prefix path (when both ran)."""
    for job in JOBS:
        plain, prefix = jobs.get(f"{job} (plain)"), jobs.get(f"{job} (prefix)")
        if plain and prefix:
            ratio = plain["summary"]["s_per_step"] / prefix["summary"]["s_per_step"]
            prefix["summary"]["speedup_vs_plain"] = ratio
            print(f"[{job}] prefix path: {ratio:.2f}x the plain path's steps per second", flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="causal LM name or folder (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--rl-model", default=None, help="model the RL job starts from, e.g. an `sr3 sft` folder "
                        "(default: --model; a base model may write longer reasonings than an SFT one)")
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=JOBS)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS,
                        help="prefix: the default embedder; plain: every prompt computed whole (the reference)")
    parser.add_argument("--dataset", default="wordnet-revdict")
    parser.add_argument("--queries", type=lambda t: None if t == "none" else int(t), default=1000,
                        help="training queries (the main job's 1000; 'none': all)")
    parser.add_argument("--corpus-docs", type=lambda t: None if t == "none" else int(t), default=1000,
                        help="documents in the training index (the main job's 1000; 'none': all)")
    parser.add_argument("--sft-steps", type=int, default=4, help="SFT optimiser steps (the first is not timed)")
    parser.add_argument("--sft-batch", type=int, default=16, help="SFT queries per step")
    parser.add_argument("--rl-steps", type=int, default=3, help="RL optimiser steps (the first is not timed)")
    parser.add_argument("--rl-queries", type=int, default=4, help="RL queries per step (B)")
    parser.add_argument("--group-size", type=int, default=4, help="RL reasonings per query (G)")
    parser.add_argument("--reasoning-tokens", type=int, default=24, help="longest reasoning (SFT and RL)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32",
                        help="weights' dtype (pure 16-bit weights, no loss scaling: a speed figure only; fp16 only on CUDA)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="the loops' --precision: bf16 mixed precision with fp32 weights (auto: bf16 on CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny run that only checks the script works")
    parser.add_argument("--out", default="benchmarks/results/bench_training.json")
    parser.add_argument("--job", choices=JOBS, help=argparse.SUPPRESS)  # internal: run one job (the child)
    parser.add_argument("--path", choices=PATHS, default="prefix", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick:
        args = parser.parse_args(QUICK + argv)
    if args.dtype == "fp16" and not args.device.startswith("cuda"):
        parser.error("--dtype fp16 needs --device cuda (CPU kernels for fp16 training are slow or missing); use fp32 or bf16.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu.")

    if args.job:  # the child
        result = run_job(args)
        Path(args.result).write_text(json.dumps(result))
        return result

    results = {"environment": {**environment(dtype=args.dtype), "device": args.device}, "settings": vars(args), "jobs": {}}
    if args.device.startswith("cuda"):
        results["environment"]["gpu"] = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="bench_training.") as work_dir:
        for job in args.jobs:
            for path in args.paths:
                name = f"{job} ({path})"
                result_file = Path(work_dir) / f"{job}-{path}.json"
                start = time.perf_counter()
                print(f"[{name}] running ...", flush=True)
                completed = subprocess.run(child_command(args, job, path, work_dir, result_file))
                if completed.returncode != 0:
                    raise SystemExit(f"the {name} job failed (exit status {completed.returncode}); its error is above.")
                outcome = json.loads(result_file.read_text())
                outcome["process_s"] = time.perf_counter() - start  # with the interpreter start, model load and index build
                outcome["summary"] = summarise(outcome)
                results["jobs"][name] = outcome
                print(f"[{name}] {outcome['steps_run']} steps in {outcome['process_s']:.0f} s (process)", flush=True)
        report_speedups(results["jobs"])
    report(results)
    out = Path(args.out)
    write_json(out, results)
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
