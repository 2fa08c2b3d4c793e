"""The main job, ``sr3 train``: SFT, then RL, then one evaluation table and a plot of the RL run.

    output_dir/
      sft/            checkpoints, final/ (the SFT embedder), tensorboard/
      rl/             checkpoints, final/ (the SFT+RL policy), tensorboard/
      results.json    the table's rows: base, SFT, SFT+RL (each direct and with reasoning), BM25, MiniLM
      results.md      the same table, and how long each stage took
      rl_curves.png   reward and held-out nDCG@10 over the RL steps

Each stage is the command of the same name (`train_sft`, `train_rl`, `run_eval`) with settings
derived from `TrainConfig` by `stage_configs`. With ``--resume`` a finished stage is kept and an
interrupted one continues from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from sr3_agent.config import EvalConfig, RLConfig, SFTConfig, TrainConfig
from sr3_agent.embedder import CONFIG_FILE, ReasoningEmbedder
from sr3_agent.evaluate import markdown_table, write_results
from sr3_agent.runlock import holds_run_lock

#: TensorBoard tags of the RL run drawn in rl_curves.png.
CURVES = ("charts/reward_mean", "eval/ndcg@10")

logger = logging.getLogger(__name__)


def announce(message: str) -> None:
    """A stage line: printed, and logged (so that `sr3 train`'s train.log holds it too)."""
    print(message)
    logger.info(message)


def stage_configs(config: TrainConfig) -> tuple[SFTConfig, RLConfig, EvalConfig]:
    """The settings of each stage (pure)."""
    out = Path(config.output_dir)
    sft = SFTConfig(model=config.model, dataset=config.dataset, num_queries=config.train_queries,
                    corpus_docs=config.corpus_docs, steps=config.sft_steps, batch_size=config.sft_batch_size,
                    reasoning_tokens=config.reasoning_tokens, seed=config.seed, output_dir=str(out / "sft"),
                    save_every=max(1, config.sft_steps // 3), device=config.device,
                    precision=config.precision)
    rl = RLConfig(model=str(out / "sft" / "final"), dataset=config.dataset, num_queries=config.train_queries,
                  corpus_docs=config.corpus_docs, steps=config.rl_steps, queries_per_step=config.queries_per_step,
                  group_size=config.group_size, max_new_tokens=config.reasoning_tokens,
                  eval_every=config.rl_eval_every, eval_queries=config.rl_eval_queries, eval_docs=config.rl_eval_docs,
                  seed=config.seed, output_dir=str(out / "rl"), save_every=max(1, config.rl_steps // 3),
                  device=config.device, precision=config.precision)
    evaluation = EvalConfig(models=["base", str(out / "sft" / "final"), str(out / "rl" / "final")],
                            base_model=config.model, datasets=[config.dataset], num_queries=config.eval_queries,
                            corpus_docs=config.eval_docs, reasoning=True, max_new_tokens=config.reasoning_tokens,
                            baselines=config.baselines, seed=0, output=str(out / "results.json"), device=config.device)
    return sft, rl, evaluation


def stage_state(folder: Path) -> str:
    """'done' (a final model is saved), 'interrupted' (checkpoints but no final model) or 'new'."""
    if (folder / "final" / CONFIG_FILE).is_file():
        return "done"
    return "interrupted" if any(folder.glob("checkpoint-*")) else "new"


def read_scalars(logdir: Path, tags: tuple[str, ...] = CURVES) -> dict[str, list[tuple[int, float]]]:
    """(step, value) pairs of each tag from a TensorBoard folder (tags never written are left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0}).Reload()
    present = set(events.Tags()["scalars"])
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags if tag in present}


def plot_rl_curves(scalars: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """One panel per tag, RL step on the x axis; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"charts/reward_mean": "mean reward (train batch)", "eval/ndcg@10": "held-out nDCG@10 (reasoning)"}
    fig, axes = plt.subplots(1, len(scalars), figsize=(5 * max(1, len(scalars)), 3.5), squeeze=False)
    for axis, (tag, points) in zip(axes[0], scalars.items()):
        steps, values = zip(*points) if points else ((), ())
        axis.plot(steps, values, marker="o" if len(points) < 30 else None)
        axis.set_xlabel("RL step")
        axis.set_title(labels.get(tag, tag))
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@holds_run_lock  # one run per output folder; each stage also locks its own subfolder
def run_train(config: TrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """SFT, RL, evaluation; returns the table's rows, the stage timings and the output paths."""
    from sr3_agent.compare import run_eval
    from sr3_agent.rl import train_rl
    from sr3_agent.sft import train_sft

    out = Path(config.output_dir)
    sft_config, rl_config, eval_config = stage_configs(config)
    seconds: dict[str, float] = {}
    for name, stage_config, train in (("sft", sft_config, train_sft), ("rl", rl_config, train_rl)):
        folder = Path(stage_config.output_dir)
        state = stage_state(folder)
        if state != "new" and not config.resume:
            raise FileExistsError(f"{folder} holds an earlier run ({state}). Continue it with --resume, or choose "
                                  "another --output-dir.")
        if state == "done":
            announce(f"[{name}] kept the finished stage in {folder}")
            continue
        announce(f"[{name}] training, output in {folder}")
        stage_config.resume = state == "interrupted"
        start = time.perf_counter()
        train(stage_config, progress=progress)
        seconds[name] = time.perf_counter() - start
        if stage_state(folder) != "done":  # Ctrl-C: the stage saved a checkpoint and returned
            return {"interrupted": name, "seconds": seconds}

    announce("[eval] base, SFT and SFT+RL, each direct and with reasoning" + (", BM25, MiniLM" if config.baselines else ""))
    start = time.perf_counter()
    sources = {"base": config.model, "SFT": out / "sft" / "final", "SFT+RL": out / "rl" / "final"}
    embedders = [(label, ReasoningEmbedder.from_pretrained(source, device=config.device))
                 for label, source in sources.items()]
    rows = run_eval(eval_config, embedders=embedders)
    seconds["eval"] = time.perf_counter() - start
    table = markdown_table(rows)
    write_results(rows, eval_config.output)
    timing = ", ".join(f"{name} {value / 60:.1f} min" for name, value in seconds.items())
    (out / "results.md").write_text(f"{table}\n\nStage times: {timing}.\n")
    plot = plot_rl_curves(read_scalars(out / "rl" / "tensorboard"), out / "rl_curves.png")
    (out / "timings.json").write_text(json.dumps(seconds, indent=2) + "\n")
    return {"rows": rows, "table": table, "seconds": seconds, "plot": plot, "results": out / "results.json"}
