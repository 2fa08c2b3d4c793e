"""Why a server runs all its torch work on one thread: the same texts embedded by a model loaded and
run on the main thread, loaded on the main thread and run on a second one, and loaded and run on
one worker thread (a `MicroBatcher`'s, through ``call``, as the servers do now).

On a CPU, PyTorch's OpenMP threads (libgomp) belong to the thread that starts them. Once two threads
have started teams there are more OpenMP threads than cores, and the second thread's operators ran
slower: that was `sr3 serve` before it loaded its model on the batcher's worker thread
(docs/serving.md "Under load"). Each case runs in a process of its own (a thread that ran torch
cannot be undone), one after another, timing ``--repeats`` passes over ``--texts`` wordnet-revdict
queries in batches of 32 with the bundled model, after one warm-up pass.

Usage: ``python benchmarks/bench_threads.py`` (about 3 minutes on 2 cores). Prints a Markdown table
and writes JSON (default benchmarks/results/bench_threads.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import environment

CASES = {"main": "loaded and run on the main thread",
         "second": "loaded on the main thread, run on a second thread",
         "worker": "loaded and run on one worker thread (MicroBatcher.call)"}


def on_new_thread(fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def run_case(case: str, count: int, repeats: int, model: str | None) -> list[float]:
    """The seconds of each timed pass of one case, in this process."""
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_env import load_dataset
    from sr3_env.serving.batcher import MicroBatcher

    texts = list(load_dataset("wordnet-revdict", split="test").query_texts)[:count]

    def passes(embedder: ReasoningEmbedder) -> list[float]:
        times = []
        for _ in range(repeats + 1):  # the first is the warm-up
            started = time.perf_counter()
            for start in range(0, len(texts), 32):
                embedder.encode_queries(texts[start:start + 32])
            times.append(time.perf_counter() - started)
        return times[1:]

    if case == "worker":
        batcher = MicroBatcher(lambda kind, items: items).start()
        embedder = batcher.call(lambda: ReasoningEmbedder.from_pretrained(model)).result()
        times = batcher.call(lambda: passes(embedder)).result()
        batcher.close()
        return times
    embedder = ReasoningEmbedder.from_pretrained(model)
    if case == "main":
        return passes(embedder)
    passes(embedder)  # the main thread runs the model first, as a server's start-up did (its corpus)
    return on_new_thread(lambda: passes(embedder))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--model", default=None, help="an sr3 model folder (default: the bundled SmolLM2-135M)")
    parser.add_argument("--case", choices=sorted(CASES), help="(internal) run one case here and print its times")
    parser.add_argument("--output", default="benchmarks/results/bench_threads.json")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.texts, args.repeats, args.model)))
        return {}
    times = {}
    for case in CASES:
        child = subprocess.run([sys.executable, __file__, "--case", case, "--texts", str(args.texts), "--repeats",
                                str(args.repeats), *(["--model", args.model] if args.model else [])], capture_output=True, text=True, check=True)
        times[case] = json.loads(child.stdout.strip().splitlines()[-1])
    reference = statistics.median(times["main"])
    rows = [{"case": CASES[case], "median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3),
             "max_s": round(max(t), 3), "texts_per_s": round(args.texts / statistics.median(t), 2),
             "vs_main": round(statistics.median(t) / reference, 2)} for case, t in times.items()]
    print(f"| case ({args.texts} texts, batches of 32, {args.repeats} passes) | median s | min-max s | texts/s | ÷ main |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['case']} | {row['median_s']} | {row['min_s']}-{row['max_s']} | {row['texts_per_s']} | {row['vs_main']} |")
    result = {"environment": environment(), "settings": {"texts": args.texts, "repeats": args.repeats,
                                                         "model": args.model or "bundled"}, "rows": rows,
              "times": times}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
