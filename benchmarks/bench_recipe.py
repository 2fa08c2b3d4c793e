"""The paper's recipe for a few steps a stage: time per step and peak memory, beside the computed budget.

Runs the training stages of ``sr3 train --config RECIPE`` (SFT, rejection sampling, RL) with the
recipe's settings (bf16, LoRA, activation checkpointing, batch and group sizes, prompt length) for
``--steps`` steps each, on a ``--corpus-docs`` training index, and records for each stage its wall
time, seconds per step (the set-up, chiefly encoding the index, timed apart), and peak memory:
``torch.cuda.max_memory_allocated`` on a GPU, the process's peak resident memory on a CPU. Beside
each figure: `sr3_agent.training.memory`'s budget for the same sizes.

The recipe's own model is used where it loads offline (the local Hugging Face cache); else
``--fallback-model`` (default: the bundled SmolLM2), and the table says which ran.

    python benchmarks/bench_recipe.py [--recipe qwen2.5-1.5b] [--steps 3] [--output benchmarks/results/bench_recipe.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import environment, write_json
from sr3_agent.config import TrainConfig
from sr3_agent.training.memory import GIB, RunSizes, model_shape, stage_budgets
from sr3_agent.model.models import ModelError, resolve_model
from sr3_agent.training.train_command import stage_configs
from sr3_agent.recipes import read_config_file


def loadable_model(name: str, fallback: str) -> str:
    """``name`` where its config loads offline, else ``fallback``."""
    try:
        resolve_model(name)
        return name
    except (ModelError, OSError):
        return fallback


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GIB
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GIB


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="qwen2.5-1.5b")
    parser.add_argument("--steps", type=int, default=3, help="steps of each stage")
    parser.add_argument("--corpus-docs", type=int, default=2000, help="documents in the training index")
    parser.add_argument("--dataset", default="wordnet-revdict")
    parser.add_argument("--train-queries", type=int, default=1000)
    parser.add_argument("--fallback-model", default=None, help="the model when the recipe's does not load offline "
                        "(default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--output", default="benchmarks/results/bench_recipe.json")
    args = parser.parse_args(argv)
    from sr3_agent.model.models import DEFAULT_MODEL
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft
    from transformers import AutoConfig

    values = read_config_file(args.recipe, TrainConfig)
    model = loadable_model(values.get("model") or DEFAULT_MODEL, args.fallback_model or DEFAULT_MODEL)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(tempfile.mkdtemp(prefix="sr3-recipe-"))
    config = TrainConfig(**{**values, "model": model, "dataset": args.dataset, "corpus_docs": args.corpus_docs,
                            "train_queries": args.train_queries, "sft_steps": args.steps, "rs_steps": args.steps,
                            "rl_steps": args.steps, "output_dir": str(out)})
    stages, _, _ = stage_configs(config)
    shape = model_shape(AutoConfig.from_pretrained(resolve_model(model)))
    sizes = RunSizes(lora=config.lora, lora_rank=config.lora_rank, activation_checkpointing=config.activation_checkpointing,
                     max_length=config.max_length, reasoning_tokens=config.reasoning_tokens,
                     sft_batch_size=config.sft_batch_size, queries_per_step=config.queries_per_step,
                     group_size=config.group_size, corpus_docs=config.corpus_docs)
    budget = stage_budgets(shape, sizes)
    rows = []
    for name, stage in stages:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        (train_rl if name == "rl" else train_sft)(dataclasses.replace(stage, save_every=args.steps), progress=False)
        seconds = time.perf_counter() - start
        log = Path(stage.output_dir) / "tensorboard"
        step_seconds = _step_seconds(log, name)
        rows.append({"stage": name, "model": model, "steps": args.steps, "seconds": seconds,
                     "seconds_per_step": step_seconds, "peak_gib": peak_gib(device),
                     "budget_gib": budget["rl" if name == "rl" else "sft"]["total"]})
    print(f"recipe {args.recipe}: model {model} on {device}; {config.sft_batch_size} SFT queries a step, "
          f"{config.queries_per_step} x {config.group_size} RL samples a step, {config.max_length}-token prompts")
    print("| stage | steps | wall s | s/step | peak GiB (measured) | budget GiB (computed) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        per_step = "-" if row["seconds_per_step"] is None else f"{row['seconds_per_step']:.2f}"
        print(f"| {row['stage']} | {row['steps']} | {row['seconds']:.1f} | {per_step} | {row['peak_gib']:.2f} | "
              f"{row['budget_gib']:.2f} |")
    results = {"environment": environment(), "recipe": args.recipe, "config": dataclasses.asdict(config),
               "device": str(device), "rows": rows}
    write_json(args.output, results)
    print(f"wrote {args.output}")
    return results


def _step_seconds(log: Path, stage: str) -> float | None:
    """Mean seconds per step from the stage's TensorBoard timings (RL: its four phases; SFT: its step time)."""
    from sr3_agent.training.train_command import read_scalars

    phases = ("time/generation_s", "time/encoding_s", "time/scoring_s", "time/update_s",  # RL (sr3_agent.training.rl)
              "time/step_s")  # SFT's step (its mining time is a part of it: sr3_agent.training.sft)
    scalars = read_scalars(log, tags=phases)  # the default tags are the plot's, which hold no timings
    if not scalars:
        return None
    per_step: dict[int, float] = {}
    for key in scalars:
        for step, value in scalars[key]:
            per_step[step] = per_step.get(step, 0.0) + value
    return sum(per_step.values()) / len(per_step)


if __name__ == "__main__":
    main()
