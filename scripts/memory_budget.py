"""The GPU memory budget of the paper's recipe (`sr3 train --config qwen2.5-1.5b`), per GPU size.

    python scripts/memory_budget.py                               # Qwen2.5 0.5B / 1.5B / 3B / 7B, the recipe's sizes
    python scripts/memory_budget.py --model path/to/model-folder  # any causal LM whose config is at hand
    python scripts/memory_budget.py --queries-per-step 16 --no-lora

For each model and each of LoRA / full fine-tuning (activation checkpointing on and off), prints the
SFT and RL stages' peak memory at the recipe's sizes (`sr3_agent.training.memory`: exact parameter counts, a
model of the rest), then, for 24, 48 and 80 GB GPUs, the largest RL `--queries-per-step` (at
`--group-size`) and SFT `--sft-batch-size` that fit. Writes the numbers as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from sr3_agent.training.memory import RunSizes, largest_fitting, model_shape, stage_budgets

#: The published configs of the Qwen2.5-Instruct models (config.json on the Hugging Face hub), so that the
#: budget needs no download: (hidden, intermediate, layers, heads, key/value heads, vocabulary, tied embeddings).
QWEN25 = {
    "Qwen2.5-0.5B-Instruct": (896, 4864, 24, 14, 2, 151936, True),
    "Qwen2.5-1.5B-Instruct": (1536, 8960, 28, 12, 2, 151936, True),
    "Qwen2.5-3B-Instruct": (2048, 11008, 36, 16, 2, 151936, True),
    "Qwen2.5-7B-Instruct": (3584, 18944, 28, 28, 4, 152064, False),
}
GPU_GIB = (24, 48, 80)


def qwen25_config(name: str):
    from transformers import Qwen2Config

    hidden, intermediate, layers, heads, kv_heads, vocab, tied = QWEN25[name]
    return Qwen2Config(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                       tie_word_embeddings=tied)


def budget_rows(name: str, config, sizes: RunSizes) -> list[dict]:
    shape = model_shape(config)
    rows = []
    for lora in (True, False):
        for checkpointing in (True, False):
            run = dataclasses.replace(sizes, lora=lora, activation_checkpointing=checkpointing)
            budgets = stage_budgets(shape, run)
            rows.append({"model": name, "parameters": shape.parameters, "lora": lora,
                         "activation_checkpointing": checkpointing, "sizes": dataclasses.asdict(run),
                         "sft_gib": budgets["sft"]["total"], "rl_gib": budgets["rl"]["total"], "terms": budgets,
                         **{f"rl_queries_per_step_{gib}gb": largest_fitting(shape, run, gib, "queries_per_step", "rl")
                            for gib in GPU_GIB},
                         **{f"sft_batch_size_{gib}gb": largest_fitting(shape, run, gib, "sft_batch_size", "sft")
                            for gib in GPU_GIB}})
    return rows


def markdown(rows: list[dict], sizes: RunSizes) -> str:
    head = " | ".join(f"{gib} GB: RL q/step, SFT batch" for gib in GPU_GIB)
    lines = [f"| model | training | checkpointing | SFT GiB | RL GiB | {head} |",
             "|---|---|---|---:|---:|" + "---:|" * len(GPU_GIB)]
    for row in rows:
        fits = " | ".join(f"{row[f'rl_queries_per_step_{gib}gb']}, {row[f'sft_batch_size_{gib}gb']}" for gib in GPU_GIB)
        training = f"LoRA r={sizes.lora_rank}" if row["lora"] else "full"
        lines.append(f"| {row['model']} ({row['parameters'] / 1e9:.2f}B) | {training} | "
                     f"{'on' if row['activation_checkpointing'] else 'off'} | {row['sft_gib']:.1f} | {row['rl_gib']:.1f} | "
                     f"{fits} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", help="Hugging Face names or folders whose configs are at hand "
                        "(default: the Qwen2.5-Instruct family from their published configs)")
    defaults = RunSizes()
    for field in dataclasses.fields(RunSizes):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=getattr(defaults, field.name))
        else:
            parser.add_argument(flag, type=int, default=getattr(defaults, field.name))
    parser.add_argument("--output", default="benchmarks/results/memory_budget.json")
    args = parser.parse_args()
    sizes = RunSizes(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunSizes)})
    if args.model:
        from transformers import AutoConfig

        configs = {name: AutoConfig.from_pretrained(name) for name in args.model}
    else:
        configs = {name: qwen25_config(name) for name in QWEN25}
    rows = [row for name, config in configs.items() for row in budget_rows(name, config, sizes)]
    print(f"sizes: {dataclasses.asdict(sizes)}")
    print(markdown(rows, sizes))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
