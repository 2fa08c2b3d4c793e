"""How many requests per second `sr3 serve` answers, and how long each waits, on this machine.

Starts ``sr3 serve`` in its own process on a loopback port (the bundled SmolLM2-135M-Instruct, fp32,
by default), then for each mode (direct query embeddings; queries embedded after a reasoning of at
most ``--max-new-tokens`` tokens) and each number of concurrent clients (1, 8, 32), every client
sends ``/v1/embeddings`` requests of one real wordnet-revdict query each, one after another. Reported:
requests per second over the level, latency percentiles (p50/p90/p99) of single requests, and the
mean number of texts per forward batch (from the server's /health counters: the micro-batching).
A first line gives the embedder's own speed without HTTP for the same queries, for scale.

Usage: ``python benchmarks/bench_serve.py`` (about 6 minutes on 2 cores). Prints a Markdown table and
writes JSON (default benchmarks/results/bench_serve.json). Clients and server share the machine's
cores, as they would on one CPU box.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from _common import environment
from sr3_env.serving.process import start_process


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen:
    """``sr3 serve`` in a child process; returns once /health answers."""
    return start_process([sys.executable, "-m", "sr3_agent.cli", "serve", "--model", model, "--port", str(port), *extra],
                         port, "sr3 serve")


def run_level(url: str, model: str, texts: list[str], clients: int, per_client: int, reasoning: bool,
              max_new_tokens: int) -> dict:
    """``clients`` threads, each sending ``per_client`` one-text requests in turn."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    extras = {"reasoning": True, "max_reasoning_tokens": max_new_tokens} if reasoning else {}

    def client(index: int) -> None:
        with httpx.Client(timeout=600) as http:
            for turn in range(per_client):
                text = texts[(index * per_client + turn) % len(texts)]
                start = time.perf_counter()
                response = http.post(f"{url}/v1/embeddings", json={"model": model, "input": text, **extras})
                elapsed = time.perf_counter() - start
                with lock:
                    (latencies.append(elapsed) if response.status_code == 200 else errors.append(response.text))

    before = httpx.get(f"{url}/health").json()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    after = httpx.get(f"{url}/health").json()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    ms = np.array(latencies) * 1000
    batches = after["batches"] - before["batches"]
    return {"mode": f"reasoning (<= {max_new_tokens} tokens)" if reasoning else "direct", "clients": clients,
            "requests": len(latencies), "seconds": round(seconds, 2), "requests_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "texts_per_batch": round((after["texts"] - before["texts"]) / max(batches, 1), 1)}


def embedder_speed(model: str, texts: list[str], max_new_tokens: int) -> list[dict]:
    """The embedder's own texts/s on the same queries (one batch of all), without the server."""
    from sr3_agent import ReasoningEmbedder

    embedder = ReasoningEmbedder.from_pretrained(None if model == "base" else model, device="cpu")
    embedder.batch_size = len(texts)
    embedder.encode_queries(texts[:2], reasoning=True, max_new_tokens=2)  # warm-up (first-call costs)
    rows = []
    for reasoning in (False, True):
        start = time.perf_counter()
        embedder.encode_queries(texts, reasoning=reasoning, max_new_tokens=max_new_tokens)
        seconds = time.perf_counter() - start
        rows.append({"mode": ("reasoning" if reasoning else "direct") + ", embedder without HTTP",
                     "texts": len(texts), "batch": len(texts), "texts_per_s": round(len(texts) / seconds, 2)})
    return rows


def markdown(levels: list[dict], baseline: list[dict]) -> str:
    lines = ["| mode | concurrent clients | requests | requests/s | p50 ms | p90 ms | p99 ms | texts per forward batch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['requests_per_s']:.2f} | {r['p50_ms']:.0f} | "
              f"{r['p90_ms']:.0f} | {r['p99_ms']:.0f} | {r['texts_per_batch']:.1f} |" for r in levels]
    lines += [f"| {r['mode']} (one batch of {r['batch']}) | - | {r['texts']} | {r['texts_per_s']:.2f} texts/s | | | | |"
              for r in baseline]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", help="'base' (bundled SmolLM2) or a folder written by sr3")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients per level")
    parser.add_argument("--requests", type=int, default=96, help="requests per direct level (at least 2 per client)")
    parser.add_argument("--reasoning-requests", type=int, default=32, help="requests per reasoning level (at least 1 per client)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest reasoning, in tokens")
    parser.add_argument("--max-batch", type=int, default=32, help="the server's --max-batch")
    parser.add_argument("--no-baseline", action="store_true", help="skip the embedder-without-HTTP line")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "bench_serve.json"))
    args = parser.parse_args(argv)

    from sr3_agent.serving.run import free_port
    from sr3_env import load_dataset

    texts = load_dataset("wordnet-revdict").query_texts[:256]
    load_before = os.getloadavg()  # other work on the machine shows here: results are only as quiet as it was
    port = free_port()
    served = "bench"
    process = start_server(args.model, port, ["--served-name", served, "--max-batch", str(args.max_batch),
                                              "--reasoning-tokens", str(args.max_new_tokens), "--device", "cpu"])
    url = f"http://127.0.0.1:{port}"
    levels = []
    try:
        run_level(url, served, texts, 1, 2, False, args.max_new_tokens)  # warm-up
        for reasoning, total in ((False, args.requests), (True, args.reasoning_requests)):
            for clients in args.clients:
                per_client = max(1 if reasoning else 2, total // clients)
                levels.append(run_level(url, served, texts, clients, per_client, reasoning, args.max_new_tokens))
                print(json.dumps(levels[-1]), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    baseline = [] if args.no_baseline else embedder_speed(args.model, texts[:max(args.clients)], args.max_new_tokens)
    table = markdown(levels, baseline)
    print(table)
    result = {"environment": environment(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "model": args.model, "max_batch": args.max_batch,
              "max_new_tokens": args.max_new_tokens, "levels": levels, "embedder_without_http": baseline,
              "command": "python benchmarks/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
