"""The ``sr3`` command: ``sr3 train`` (the main job), ``sr3 sft``, ``sr3 rl``, ``sr3 eval``, ``sr3 export`` and ``sr3 serve``. Options and help come from the config dataclasses.

``sr3 train``, ``sr3 sft`` and ``sr3 rl`` also run data-parallel under ``accelerate launch`` (docs/scaling.md)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sr3_agent.training.checkpoint import stop_exit_code
from sr3_agent.config import (ConfigError, EvalConfig, ExportConfig, RLConfig, ServeConfig, SFTConfig, TrainConfig,
                              config_from_args, dataclass_arguments)
from sr3_agent.training.distributed import is_main_process, launched_world_size
from sr3_env.errors import Sr3Error

DATA_PARALLEL = ("train", "sft", "rl")  #: the commands that run under accelerate launch with several processes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sr3", description="Train and evaluate reasoning embedders (Search-R3).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    parser.commands = {}  # name -> its sub-parser (a config file sets its defaults)
    for name, (cls, _) in COMMANDS.items():
        sub = commands.add_parser(name, help=(cls.__doc__ or "").strip().splitlines()[0], description=cls.__doc__)
        sub.add_argument("--config", metavar="FILE", help="a TOML file of this command's options, or the name of a bundled "
                         "recipe (sr3_agent/recipes: qwen2.5-1.5b); options given on the command line override it")
        dataclass_arguments(sub, cls)
        parser.commands[name] = sub
    return parser


def stopped(command: str, config: object) -> bool:
    """True when a training command returned early (a first Ctrl-C or SIGTERM: it saved a checkpoint,
    but no final model); prints how to continue."""
    from sr3_agent.training.train_command import stage_state

    if stage_state(Path(config.output_dir)) == "done":
        return False
    if is_main_process():
        print(f"stopped after saving a checkpoint; continue with: sr3 {command} --resume --output-dir {config.output_dir} "
              "(and the same other options)")
    return True


def train_with_log(config: TrainConfig) -> dict:
    """``sr3 train``, its log (INFO and above, with times) also written to OUTPUT_DIR/train.log (by the main process
    of a data-parallel run)."""
    from sr3_agent.logs import log_file
    from sr3_agent.training.train_command import run_train

    with log_file(Path(config.output_dir) / "train.log") if is_main_process() else contextlib.nullcontext():
        result = run_train(config)
        if "table" in result:
            logging.getLogger("sr3_agent.training.train_command").info("results:\n%s", result["table"])
    return result


# -- the commands: each takes its config and returns the exit status ------------------------------

def train_command(config: TrainConfig) -> int:
    start = time.perf_counter()
    result = train_with_log(config)
    if "interrupted" in result:
        if is_main_process():
            print(f"stopped during {result['interrupted']}; continue with: sr3 train --resume --output-dir "
                  f"{config.output_dir}")
        return stop_exit_code()
    if not is_main_process():  # another process of a data-parallel run: the main one evaluates and prints
        return 0
    print(result["table"])
    print(f"wrote {result['results']} and {result['plot']}; TensorBoard: tensorboard --logdir {config.output_dir}")
    print(f"sr3 train finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def kept(embedder: object) -> str:
    """What a stage's final model is, for its closing line: the step it kept on the dev split and its way."""
    chosen = getattr(embedder, "selection", None)
    if not chosen:
        return " (the last step: no dev evaluation)"
    return (f" (step {chosen['step']}, the best on the dev split: {chosen['query_way']} nDCG@10 "
            f"{chosen['dev_ndcg@10']:.3f} on {chosen['dev_queries']} dev queries)")


def sft_command(config: SFTConfig) -> int:
    from sr3_agent.training.sft import train_sft

    trained = train_sft(config)
    if stopped("sft", config):
        return stop_exit_code()
    if is_main_process():
        print(f"saved the trained embedder to {Path(config.output_dir) / 'final'}{kept(trained)}")
    return 0


def rl_command(config: RLConfig) -> int:
    from sr3_agent.training.rl import train_rl

    trained = train_rl(config)
    if stopped("rl", config):
        return stop_exit_code()
    if is_main_process():
        print(f"saved the trained policy to {Path(config.output_dir) / 'final'}{kept(trained)}")
    return 0


def eval_command(config: EvalConfig) -> int:
    from sr3_agent.evaluation.eval_command import run_eval
    from sr3_agent.evaluation.evaluate import markdown_table, write_results

    rows = run_eval(config)
    print(markdown_table(rows))
    print(f"wrote {write_results(rows, config.output)}")
    return 0


def export_command(config: ExportConfig) -> int:
    from sr3_agent.serving.export import run_export

    result = run_export(config)
    check = result["check"]
    if check:
        print(f"checked against ReasoningEmbedder on {check['query_texts']} queries and {check['document_texts']} "
              f"documents of {check['dataset']}: largest absolute difference {check['query_max_abs_diff']:.2e} "
              f"(queries), {check['document_max_abs_diff']:.2e} (documents)")
    print(f"wrote {result['output']}; load it with SentenceTransformer({str(result['output'])!r})")
    return 0


def serve_command(config: ServeConfig) -> int:
    from sr3_agent.serving.run import serve

    serve(config)
    return 0


#: ``sr3 NAME``: its config class (its options and help) and the function that runs it.
COMMANDS: dict[str, tuple[type, Callable[[Any], int]]] = {
    "train": (TrainConfig, train_command), "sft": (SFTConfig, sft_command), "rl": (RLConfig, rl_command),
    "eval": (EvalConfig, eval_command), "export": (ExportConfig, export_command), "serve": (ServeConfig, serve_command)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from sr3_agent.logs import progress_for_logs, setup_logging

    progress_for_logs()  # one line per refresh, every 30 s at most, when stderr is not a terminal
    setup_logging(args.verbose)
    cls, command = COMMANDS[args.command]
    try:
        if args.config:  # the file's values become the defaults; options on the command line still win
            from sr3_agent.recipes import read_config_file

            parser.commands[args.command].set_defaults(**read_config_file(args.config, cls))
            args = parser.parse_args(argv)
        config = config_from_args(cls, args)
        if launched_world_size() > 1 and args.command not in DATA_PARALLEL:
            raise ConfigError(f"sr3 {args.command} runs in one process; with accelerate launch run `sr3 train`, "
                              f"`sr3 sft` or `sr3 rl` (docs/scaling.md), or start sr3 {args.command} without a launcher.")
        return command(config)
    except (ConfigError, Sr3Error, FileNotFoundError, FileExistsError) as error:
        parser.exit(2, f"sr3 {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
