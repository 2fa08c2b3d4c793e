"""The main job, ``sr3 train``: SFT, rejection-sampling SFT, RL, then one evaluation table and a
plot of the RL run.

    output_dir/
      sft/            checkpoints, final/ (the SFT embedder), selection.json, tensorboard/
      rs/             the same for the rejection-sampling stage (SFT on the model's best reasonings)
      rl/             checkpoints, final/ (the SFT+RS+RL policy), selection.json, tensorboard/
      results.json    the table's rows on the test split: SFT (direct), SFT+RS and SFT+RS+RL (each direct, with
                      reasoning and fused; auto too with --auto), BM25, MiniLM
      results.md      the same table, the step each stage kept and why, the model and way to use, stage times
      selected.json   the model and way to use: the best the run made on the dev split
      rl_curves.png   the RL run's reward, score margin, token rate and dev nDCG@10 over the steps

Every stage is scored on the dev split at its start, every few steps and at its end; its final/ is the best of
those checkpoints (`sr3_agent.training.selection`) and the next stage starts from it. The test split is read once,
by the table.

Each stage is a command (`train_sft` for sft and rs, `train_rl`, `run_eval`) with settings
derived from `TrainConfig` by `stage_configs`. With ``--resume`` a finished stage is kept and an
interrupted one continues from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sr3_agent.config import EvalConfig, RLConfig, SFTConfig, TrainConfig
from sr3_agent.model.embedder import CONFIG_FILE, ReasoningEmbedder
from sr3_agent.evaluation.evaluate import markdown_table, paired_bootstrap, write_results
from sr3_agent.training.checkpoint import list_checkpoints
from sr3_agent.training.distributed import Processes, is_main_process, start_processes
from sr3_agent.training.runlock import holds_run_lock
from sr3_env.errors import Sr3Error
from sr3_agent.training.selection import Selection

#: the table's label of the model interpolated between SFT and RL (--interpolate)
INTERPOLATED = "SFT~RL"

#: TensorBoard tags of the RL run drawn in rl_curves.png (the held-out curve only when it was evaluated).
CURVES = ("charts/reward_mean", "charts/margin_mean", "charts/embed_token_rate", "dev/ndcg@10_direct",
          "dev/ndcg@10_reasoning")

logger = logging.getLogger(__name__)


def announce(message: str) -> None:
    """A stage line: printed, and logged (so that `sr3 train`'s train.log holds it too), by the main process only."""
    if is_main_process():
        print(message)
        logger.info(message)


def stage_configs(config: TrainConfig) -> tuple[list[tuple[str, SFTConfig | RLConfig]], EvalConfig, dict[str, Path]]:
    """The training stages in order as (name, settings), the evaluation's settings, and the models
    the table holds by label (pure). The rejection-sampling stage ("rs") is left out with ``rs_steps=0``."""
    out = Path(config.output_dir)
    shared = dict(dataset=config.dataset, num_queries=config.train_queries, corpus_docs=config.corpus_docs,
                  seed=config.seed, device=config.device, precision=config.precision, max_length=config.max_length,
                  generation_cache=config.generation_cache,
                  lora=config.lora, lora_rank=config.lora_rank, activation_checkpointing=config.activation_checkpointing,
                  eval_queries=config.dev_queries, eval_docs=config.dev_docs, dev_fraction=config.dev_fraction,
                  select_by=config.select_by)
    # without reasonings the LM loss would only teach the token right after a prompt, which the model would
    # then also write first under the reasoning prompt: it is left out
    sft = SFTConfig(model=config.model, steps=config.sft_steps, batch_size=config.sft_batch_size,
                    learning_rate=config.sft_learning_rate, reasoning_fraction=config.sft_reasoning_fraction,
                    reasoning_tokens=config.reasoning_tokens,
                    lm_weight=0.1 if config.sft_reasoning_fraction > 0 else 0.0,
                    output_dir=str(out / "sft"), save_every=max(1, config.sft_steps // 2), eval_every=config.sft_eval_every,
                    latent_tokens=config.latent_tokens, latent_fraction=config.latent_fraction, **shared)
    stages: list[tuple[str, SFTConfig | RLConfig]] = [("sft", sft)]
    if config.rs_steps:  # its LM loss labels only the reasonings: labelled after direct prompts too, the token would
        # be learned as the first thing to write, which the model then does under the reasoning prompt (docs/results.md)
        stages.append(("rs", SFTConfig(
            model=str(out / "sft" / "final"), steps=config.rs_steps, batch_size=config.sft_batch_size,
            reasoning_fraction=0.5, reasoning_samples=config.rs_samples, keep="best", reasoning_temperature=0.5,
            lm_weight=0.5, lm_direct=False, learning_rate=config.rs_learning_rate, reasoning_tokens=config.reasoning_tokens,
            output_dir=str(out / "rs"),
            save_every=max(1, config.rs_steps // 2), eval_every=config.rs_eval_every,
            anchor_weight=config.anchor_weight, latent_tokens=config.latent_tokens, min_token_rate=config.min_token_rate,
            latent_fraction=config.latent_fraction, **{**shared, "select_by": config.rs_select_by})))
    before_rl = Path(stages[-1][1].output_dir) / "final"
    stages.append(("rl", RLConfig(
        model=str(before_rl), steps=config.rl_steps, learning_rate=config.rl_learning_rate,
        queries_per_step=config.queries_per_step, group_size=config.group_size, reasoning_tokens=config.reasoning_tokens, eval_every=config.rl_eval_every,
        anchor_weight=config.anchor_weight, output_dir=str(out / "rl"),
        save_every=max(1, config.rl_steps // 2), auto=config.auto, **shared)))
    trained = "SFT+RS" if config.rs_steps else "SFT"
    models = {**({"base": Path(config.model or "")} if config.eval_base else {}),
              **({"SFT": out / "sft" / "final"} if config.rs_steps else {}),
              trained: before_rl, f"{trained}+RL": out / "rl" / "final",
              **({INTERPOLATED: out / "interpolated" / "final"} if config.interpolate else {})}
    evaluation = EvalConfig(models=[str(path) for path in models.values()], base_model=config.model,
                            datasets=dataset_names(config.dataset), num_queries=config.eval_queries,
                            corpus_docs=config.eval_docs,
                            reasoning=True, reasoning_tokens=config.reasoning_tokens, auto=config.auto,
                            baselines=config.baselines, seed=0,
                            output=str(out / "results.json"), device=config.device,
                            precision=config.precision, max_length=config.max_length,
                            generation_cache=config.generation_cache)
    return stages, evaluation, models


def interpolate_stage(config: TrainConfig, rl_config: RLConfig) -> str:
    """After RL: score ``(1 - a) * SFT + a * RL`` on the RL stage's dev set for each ``a`` of ``config.interpolate``,
    beside the two models themselves, and save the best as interpolated/final (it records its alpha and dev scores
    as any stage's final model does). Returns the sentence that says which it kept."""
    from sr3_agent.evaluation.eval_command import load_embedder
    from sr3_agent.training.interpolation import chosen_mix, interpolation_curve
    from sr3_agent.training.selection import DevEvaluator, dev_set, stage_ways

    out = Path(config.output_dir)
    dev = dev_set(rl_config)
    if dev is None:
        raise Sr3Error("--interpolate chooses its weight on the dev split, and this dataset has none: pass "
                       "--dev-fraction 0.05 (or write qrels/dev.tsv), or leave --interpolate out.")
    evaluator = DevEvaluator(dev, stage_ways(reasoning=True, auto=config.auto), reasoning_tokens=config.reasoning_tokens)
    loading = EvalConfig(models=[], device=config.device, precision=config.precision, max_length=config.max_length)
    start, end = (load_embedder(str(out / stage / "final"), loading)[1] for stage in ("sft", "rl"))
    curve = interpolation_curve(start, end, evaluator, config.interpolate, start_scores=rs_start_scores(out))
    by = config.interpolate_select_by
    alpha, model = chosen_mix(start, end, curve, by, config.interpolate_tolerance, evaluator.fingerprint)
    folder = out / "interpolated"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curve.json").write_text(json.dumps([{"alpha": a, **asdict(scores)} for a, scores in curve], indent=2) + "\n")
    model.save_pretrained(folder / "final")
    name = {0.0: " (the SFT model)", 1.0: " (the RL model)"}.get(alpha, "")
    others = ", ".join(f"alpha {a:.2f} {scores.metric(by):.3f} (direct {scores.ndcg['direct']:.3f})"
                       for a, scores in curve if a != alpha)
    kept = dict(curve)[alpha]
    return (f"kept alpha {alpha:.2f}{name}: best dev nDCG@10 ({by}) {kept.metric(by):.3f} with direct "
            f"{kept.ndcg['direct']:.3f}, among the weights whose direct is at most {config.interpolate_tolerance} "
            f"below the SFT model's ({others})")


def rs_start_scores(out: Path) -> Any:
    """The dev scores the rejection-sampling stage gave its starting model, the SFT model (its step 0 in
    selection.json; every stage of `sr3 train` scores the same dev set), or None where that stage did not run."""
    from sr3_agent.training.selection import Selection

    saved = out / "rs" / "selection.json"
    if not saved.is_file():
        return None
    return next((s for s in Selection.load(out / "rs", "best").history if s.step == 0), None)


class FormatNotLearned(Sr3Error):
    """Before RL, the model ends too few of its own reasonings with <|embed_token|>."""


def check_format(model: Path, minimum: float) -> None:
    """Raise `FormatNotLearned` when the model's recorded greedy dev token rate (from its stage's selection) is below
    ``minimum``; nothing to check where no rate was recorded."""
    rate = recorded_token_rate(model)
    if rate is None or rate >= minimum:
        return
    raise FormatNotLearned(
        f"After rejection sampling the model ends only {rate:.0%} of its greedy dev reasonings with <|embed_token|> "
        f"(RL needs at least {minimum:.0%}: it cannot reward a format the model never writes). Continue this run with "
        "more rejection-sampling steps or samples (--rs-steps 16 --rs-samples 8, then --resume after removing "
        f"{model.parent}), or start from an instruction-tuned model; --min-token-rate 0 skips this check.")


def format_rounds(stage_config: SFTConfig, config: TrainConfig, progress: bool,
                  processes: Processes = Processes()) -> bool:
    """The bounded format stage: while the rejection-sampling model ends fewer than ``min_token_rate`` of its dev
    reasonings with the token, continue that stage for ``rs_steps`` more steps (from its last checkpoint; every
    checkpoint stays a candidate), at most ``format_rounds`` times. Every process decides from the same saved model.
    Returns False when a round was stopped (Ctrl-C, SIGTERM) before its final model was saved: `--resume` continues it."""

    from sr3_agent.training.sft import train_sft

    folder = Path(stage_config.output_dir)
    for _ in range(config.format_rounds):
        rate = recorded_token_rate(folder / "final")
        if rate is None or rate >= config.min_token_rate:
            return True
        announce(f"[rs] its model ends {rate:.0%} of its dev reasonings with <|embed_token|> (RL needs "
                 f"{config.min_token_rate:.0%}): {config.rs_steps} more steps")
        processes.wait()  # every process has read the saved model before the main one removes it
        if processes.is_main:
            shutil.rmtree(folder / "final")
        stage_config.steps, stage_config.resume = stage_config.steps + config.rs_steps, True
        train_sft(stage_config, progress=progress)
        if stage_state(folder) != "done":
            return False
    return True


def drop_checkpoints(folder: Path) -> None:
    """Remove a finished stage's checkpoints and best.pt (its final/ holds the model it kept; `sr3 train --resume`
    keeps a finished stage as it is, so nothing reads them again)."""
    from sr3_agent.training.selection import BEST_FILE

    removed = [*list_checkpoints(folder), *([folder / BEST_FILE] if (folder / BEST_FILE).is_file() else [])]
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if removed:
        logger.info("removed %s of the finished stage (--keep-checkpoints keeps them)", ", ".join(p.name for p in removed))


def round_end(latest_step: int, round_steps: int) -> int:
    """The step a resumed rejection-sampling stage runs to: the end of the format round its latest checkpoint
    (``latest_step``) falls in, so a round stopped part-way finishes as one round; ``round_steps`` at least."""
    return max(round_steps, -(-latest_step // round_steps) * round_steps)


def check_splits(dataset: str | list[str]) -> None:
    """Raise `SplitNotFoundError` naming what to add when a dataset lacks the train split (every stage trains on it)
    or the test split (the final table reads it)."""
    from sr3_env import SplitNotFoundError, available_splits

    for name in dataset_names(dataset):
        missing = [split for split in ("train", "test") if split not in available_splits(name)]
        if missing:
            raise SplitNotFoundError(
                f"{name} has no {' and no '.join(missing)} split (qrels/{missing[0]}.tsv; it has "
                f"{available_splits(name) or 'none'}): sr3 train trains on train and ends with a table on test. Add "
                "the qrels (docs/data.md), or run sr3 sft / sr3 rl / sr3 eval, which read one split each.")


def dataset_names(dataset: str | list[str]) -> list[str]:
    """The datasets of a ``--dataset`` option without their weights: what the table evaluates, each on its own (pure)."""
    from sr3_env.mixture import parse_dataset_specs

    return [name for name, _ in parse_dataset_specs(dataset)]


def recipe_note(config: TrainConfig) -> str:
    """What the main job ran, and the longer recipe whose reasoning paid in docs/results.md, as commands
    that continue from this run's SFT model (pure)."""
    out = Path(config.output_dir)
    stages = ([f"SFT ({config.sft_steps} steps)"] + ([f"rejection-sampling SFT ({config.rs_steps} steps)"] if config.rs_steps
              else []) + [f"one-turn RL ({config.rl_steps} steps)"])
    specs = config.dataset if isinstance(config.dataset, str) else " ".join(config.dataset)
    names = " ".join(dataset_names(config.dataset))
    data = f"--dataset {specs} --num-queries {config.train_queries or 'none'} --corpus-docs {config.corpus_docs or 'none'}"
    return (f"Recipe: {', then '.join(stages)}, sized for the main job. The recipe whose reasoning paid over three seeds on the whole corpus "
            "(docs/results.md, \"Full scale\") reads the documents its direct embedding retrieved and trains for two "
            "turns; about 50 min of training on 2 CPU cores, from this run's SFT model:\n\n"
            f"    sr3 sft --model {out / 'sft' / 'final'} {data} --steps 8 --reasoning-fraction 0.5 --reasoning-samples 4 "
            f"--keep best --reasoning-temperature 0.5 --lm-weight 0.5 --learning-rate 2e-5 --feedback-fraction 0.5 "
            f"--output-dir {out / 'rs-feedback'}\n"
            f"    sr3 rl --model {out / 'rs-feedback' / 'final'} {data} --turns 2 --steps 120 --save-every 20 "
            f"--output-dir {out / 'rs-feedback-rl'}\n"
            f"    sr3 eval --models {out / 'rs-feedback-rl' / 'final'} --datasets {names} --turns 2 "
            "--num-queries none --corpus-docs none\n")


def test_rows(models: dict[str, Path], config: EvalConfig) -> list[dict[str, Any]]:
    """The table's rows on the test split: the SFT model's direct embedding alone (the reference the later stages
    must not fall below), then the other models in every way, beside the baselines."""
    from dataclasses import replace

    from sr3_agent.evaluation.eval_command import run_eval

    first = {label: path for label, path in models.items() if label == "SFT"}
    rest = {label: path for label, path in models.items() if label != "SFT"}
    rows = []
    if first:
        sft_config = replace(config, models=[str(first["SFT"])], reasoning=False, auto=False, baselines=False)
        rows += run_eval(sft_config, embedders=eval_embedders(first, sft_config))
    return rows + run_eval(config, embedders=eval_embedders(rest, config))


def recorded_selection(model: Path) -> dict[str, Any] | None:
    """The selection a model folder records (`selection` in its sr3_embedder.json), or None."""
    settings = Path(model) / CONFIG_FILE
    return json.loads(settings.read_text()).get("selection") if settings.is_file() else None


def recorded_token_rate(model: Path) -> float | None:
    """The greedy dev token rate of the step a model folder's stage kept, or None where none was recorded."""
    return ((recorded_selection(model) or {}).get("scores") or {}).get("embed_token_rate")


def selection_lines(models: dict[str, Path]) -> list[str]:
    """For each trained model, the step its stage kept and its dev figure, from the selection it saved (pure
    reading of the models' folders)."""
    lines = []
    for label, path in models.items():
        chosen = recorded_selection(path)
        if label != "base" and chosen:
            low, high = chosen["dev_interval"]
            lines.append(f"{label}: step {chosen['step']} of its stage; its best way on dev is {chosen['query_way']}, "
                         f"nDCG@10 {chosen['dev_ndcg@10']:.3f} [{low:.3f}, {high:.3f}] ({chosen['dev_queries']} dev queries)")
    return lines


def chosen_model(models: dict[str, Path]) -> tuple[str, Path, dict[str, Any]] | None:
    """(label, folder, its selection) of the trained model with the highest dev nDCG@10 in its best way (pure reading
    of the models' folders; every stage of a run scores the same dev set, so the figures compare). Ties go to the
    earlier stage; None where no stage recorded a selection."""
    best = None
    for label, path in models.items():
        chosen = recorded_selection(path)
        if label != "base" and chosen and (best is None or chosen["dev_ndcg@10"] > best[2]["dev_ndcg@10"]):
            best = (label, Path(path), chosen)
    return best


def use_line(models: dict[str, Path]) -> str:
    """One line: the model and way to use, the best the run made on the dev split (`chosen_model`)."""
    chosen = chosen_model(models)
    if chosen is None:
        return f"Use {list(models.values())[-1]} (no dev evaluation ran: no model or way was chosen; direct is the default)."
    label, path, selection = chosen
    low, high = selection["dev_interval"]
    return (f"Use {path} ({label}) with its {selection['query_way']} query embedding: the best model and way of this "
            f"run on the dev split, nDCG@10 {selection['dev_ndcg@10']:.3f} [{low:.3f}, {high:.3f}] on "
            f"{selection['dev_queries']} dev queries (recorded in the model: encode_queries uses it by default).")


def eval_embedders(models: dict[str, Path], config: EvalConfig) -> list[tuple[str, ReasoningEmbedder]]:
    """The table's models under their labels, loaded as `sr3 eval` loads them (its device, precision,
    batch size and prompt length)."""
    from sr3_agent.evaluation.eval_command import load_embedder

    return [(label, load_embedder("base" if label == "base" else str(source), config)[1]) for label, source in models.items()]


def comparison_pairs(labels: list[str], auto: bool = False, latent: bool = False) -> list[tuple[str, str]]:
    """(baseline, system) row names the table's paired intervals compare (pure): for each model,
    reasoning and fused (and auto, with ``auto``; latent, with ``latent``) against its direct embedding;
    then each way of the last model (after RL) against the same way of the one before it."""
    ways = ("reasoning", "fused") + (("auto",) if auto else ()) + (("latent",) if latent else ())
    pairs = [(f"{label} (direct)", f"{label} ({way})") for label in labels for way in ways]
    if len(labels) >= 2:
        pairs += [(f"{labels[-2]} ({way})", f"{labels[-1]} ({way})") for way in ("direct", *ways)]
    return pairs


def comparison_table(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> str:
    """A Markdown table of paired nDCG@10 differences (system − baseline) with 95% bootstrap intervals
    over the shared queries; pairs with a missing row are left out. Rows of several datasets (sr3 train on a
    mixture) are compared within each dataset, which each line then names."""
    datasets = list(dict.fromkeys(row.get("dataset") for row in rows))
    lines = ["| comparison (nDCG@10) | difference | 95% interval |", "|---|---:|---|"]
    for dataset in datasets:
        by_name = {row["system"]: row for row in rows if row.get("dataset") == dataset}
        where = f" on {dataset}" if len(datasets) > 1 else ""
        for baseline, system in pairs:
            if baseline in by_name and system in by_name:
                d = paired_bootstrap(by_name[baseline]["per_query_ndcg@10"], by_name[system]["per_query_ndcg@10"])
                lines.append(f"| {system} vs {baseline}{where} | {d['mean']:+.3f} | [{d['low']:+.3f}, {d['high']:+.3f}] |")
    return "\n".join(lines) + "\n"


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

    labels = {"charts/reward_mean": "mean reward (train batch)", "charts/margin_mean": "score margin (train batch)",
              "charts/embed_token_rate": "token written by the model", "eval/ndcg@10": "held-out nDCG@10 (reasoning)"}
    fig, axes = plt.subplots(1, len(scalars), figsize=(5 * max(1, len(scalars)), 3.5), squeeze=False)
    for axis, (tag, points) in zip(axes[0], scalars.items()):
        steps, values = zip(*points) if points else ((), ())
        axis.plot(steps, values, marker="o" if len(points) < 30 else None, alpha=0.4 if len(points) >= 10 else 1.0,
                  label="per step")
        if len(points) >= 10:  # one batch per step is noisy: its running mean over 5 steps beside it
            kernel = np.ones(5) / 5
            axis.plot(steps[4:], np.convolve(values, kernel, mode="valid"), label="mean of 5 steps")
            axis.legend(fontsize=8)
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
    """SFT, RL, evaluation; returns the table's rows, the stage timings and the output paths.

    Under ``accelerate launch`` every process trains every stage (data-parallel, as ``sr3 sft`` and ``sr3 rl`` do) and
    the main process alone evaluates and writes the table; the others return the stage timings only."""
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft

    check_splits(config.dataset)  # before any training: a missing split would otherwise fail only at the table
    processes = start_processes(config.device)  # one process unless started by accelerate launch / torchrun
    out = Path(config.output_dir)
    stages, eval_config, models = stage_configs(config)
    seconds: dict[str, float] = {}
    for name, stage_config in stages:
        train = train_rl if name == "rl" else train_sft
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
        saved = list_checkpoints(folder) if name == "rs" and stage_config.resume and config.rs_steps > 0 else []
        if saved:  # perhaps stopped in a format round: finish that round
            stage_config.steps = round_end(int(saved[-1].name.split("-")[-1]), config.rs_steps)
        start = time.perf_counter()
        train(stage_config, progress=progress)
        finished = stage_state(folder) == "done" and (name != "rs" or format_rounds(stage_config, config, progress,
                                                                                     processes))
        seconds[name] = time.perf_counter() - start  # rejection sampling's format rounds included
        if not finished:  # Ctrl-C or SIGTERM: the stage saved a checkpoint and returned
            return {"interrupted": name, "seconds": seconds}
        announce(f"[{name}] {Selection.load(folder, stage_config.select_by, stage_config.min_token_rate).reason()}")
        if name == "rs":
            check_format(folder / "final", config.min_token_rate)
        if not config.keep_checkpoints and processes.is_main:
            drop_checkpoints(folder)

    if not processes.is_main:  # what follows evaluates in the main process alone, with no collective: none to join
        return {"seconds": seconds}
    if config.interpolate:
        if stage_state(out / "interpolated") == "done":
            announce(f"[interpolate] kept the finished stage in {out / 'interpolated'}")
        else:
            announce(f"[interpolate] SFT and RL weights mixed at {', '.join(map(str, config.interpolate))}, scored on dev")
            start = time.perf_counter()
            announce(f"[interpolate] {interpolate_stage(config, stages[-1][1])}")
            seconds["interpolate"] = time.perf_counter() - start

    announce(f"[eval] on the test split: {', '.join(label for label in models if label != 'SFT')}: each direct, "
             "with reasoning and fused" + (" and auto" if config.auto else "") + ("; SFT direct" if "SFT" in models else "")
             + (", beside BM25 and MiniLM" if config.baselines else ""))
    start = time.perf_counter()
    rows = test_rows(models, eval_config)
    seconds["eval"] = time.perf_counter() - start
    trained = [label for label in models if label != "base"]
    kept = selection_lines(models)
    table = (markdown_table(rows) + "\nPaired differences over the same queries:\n\n"
             + comparison_table(rows, comparison_pairs(trained, config.auto, config.latent_tokens > 0)
                                + [(f"{trained[0]} (direct)", f"{label} ({way})") for label in trained[2:] for way in
                                   ("direct", "reasoning", "fused") + (("auto",) if config.auto else ())])
             + "\nCheckpoints kept (each stage's best on the dev split, which the next stage starts from):\n\n"
             + "\n".join(f"- {line}" for line in kept) + "\n\n" + recipe_note(config) + "\n" + use_line(models) + "\n")
    announce(use_line(models))
    chosen = chosen_model(models)
    if chosen is not None:
        (out / "selected.json").write_text(json.dumps({"label": chosen[0], "model": str(chosen[1]), **chosen[2]},
                                                      indent=2) + "\n")
    write_results(rows, eval_config.output)
    timing = ", ".join(f"{name} {value / 60:.1f} min" for name, value in seconds.items())
    (out / "results.md").write_text(f"{table}\n\nStage times: {timing}.\n")
    plot = plot_rl_curves(read_scalars(out / "rl" / "tensorboard"), out / "rl_curves.png")
    (out / "timings.json").write_text(json.dumps(seconds, indent=2) + "\n")
    return {"rows": rows, "table": table, "seconds": seconds, "plot": plot, "results": out / "results.json"}
