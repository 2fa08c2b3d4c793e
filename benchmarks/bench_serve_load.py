"""Does a server hold under load? Closed-loop clients at 1, 8, 64 and 256 concurrent connections.

Starts two real servers in their own processes on loopback ports: ``sr3 serve`` (the bundled
SmolLM2-135M-Instruct, a 200-document semanlink corpus, a bounded queue) and the OpenEnv server
(``python -m sr3_env.openenv``, RetrievalEmbed-v0 over semanlink with all-MiniLM-L6-v2). For each
route (``/v1/embeddings``, ``/retrieve``, an OpenEnv ``/ws`` session's reset + step) and each level,
every client sends requests one after another, at most ``--per-client`` of them and for at most
``--seconds``; a request that is not answered within ``--timeout`` seconds counts as a timeout. A
client told 429 waits the ``Retry-After`` it was given (as a well-behaved client does).

Reported per level: answers per second (200s), p50/p99 latency of the 200s, counts by status,
the server's RSS at the start and the end, and the mean batch the server formed; per server, the
requests its ``/metrics`` counted against those sent. Beside them, in the same run, the same work
in-process (no HTTP): the embedder encoding the same queries in batches of the size the server
formed at 64 clients, and the vector environment stepping the same number of actions in such
batches. Their ratio is the server's overhead.

Usage: ``python benchmarks/bench_serve_load.py`` (about 8 minutes on 2 cores). Prints Markdown
tables and writes JSON (default benchmarks/results/bench_serve_load.json). Clients and servers
share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import environment
from bench_serve import start_server
from sr3_env.serving.process import start_process, stop_process

LEVELS = (1, 8, 64, 256)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def scrape(url: str, headers: dict) -> str:
    import httpx

    return httpx.get(f"{url}/metrics", headers=headers, timeout=30).text


def counted(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and all(f'{k}="{v}"' in (match.group(2) or "") for k, v in labels.items()):
            total += float(match.group(3))
    return total


def summarise(clients: int, seconds: float, outcomes: list[tuple[str, float]], rss: tuple[float, float],
              batch: float) -> dict:
    ok = sorted(latency for status, latency in outcomes if status == "200")
    statuses: dict[str, int] = {}
    for status, _ in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
    return {"clients": clients, "seconds": round(seconds, 2), "requests": len(outcomes),
            "answered_per_s": round(len(ok) / seconds, 2), "p50_ms": round(1000 * float(np.percentile(ok, 50)), 1) if ok else None,
            "p99_ms": round(1000 * float(np.percentile(ok, 99)), 1) if ok else None, "by_status": statuses,
            "rss_start_mib": round(rss[0], 1), "rss_end_mib": round(rss[1], 1), "mean_batch": round(batch, 2)}


async def http_level(url: str, route: str, bodies: list[dict], headers: dict, clients: int, per_client: int,
                     seconds: float, timeout: float) -> list[tuple[str, float]]:
    import httpx

    outcomes: list[tuple[str, float]] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as http:
        async def client(number: int) -> None:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                started = time.monotonic()
                try:
                    answer = await http.post(route, json=bodies[(number * per_client + i) % len(bodies)])
                    status = str(answer.status_code)
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.TransportError as error:
                    status = f"transport:{type(error).__name__}"
                outcomes.append((status, time.monotonic() - started))
                if status == "429":
                    await asyncio.sleep(min(float(answer.headers.get("Retry-After", 1)), max(0.0, deadline - time.monotonic())))

        await asyncio.gather(*(client(n) for n in range(clients)))
    return outcomes


async def ws_level(url: str, query_ids: list[str], dim: int, clients: int, per_client: int, seconds: float,
                   timeout: float) -> list[tuple[str, float]]:
    """Each client holds one OpenEnv session and does reset + step per request."""
    from openenv.core.generic_client import GenericEnvClient  # imported (seconds) before the level is timed

    outcomes: list[tuple[str, float]] = []
    deadline = time.monotonic() + seconds
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(64, dim)).round(5).tolist()

    async def client(number: int) -> None:
        try:
            env = await GenericEnvClient(base_url=url, message_timeout_s=timeout).connect()
        except ConnectionError:
            outcomes.append(("connect", 0.0))
            return
        try:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                started = time.monotonic()
                try:
                    await env.reset(query_id=query_ids[(number + i) % len(query_ids)])
                    await env.step({"embedding": actions[(number + i) % len(actions)]})
                    status = "200"
                except asyncio.TimeoutError:
                    status = "timeout"
                except RuntimeError as error:  # the server's error message: capacity, queue full, ...
                    status = "429" if "capacity" in str(error).lower() else "error"
                outcomes.append((status, time.monotonic() - started))
        finally:
            await env.disconnect()

    await asyncio.gather(*(client(n) for n in range(clients)))
    return outcomes


def start_openenv(port: int, extra: list[str]) -> subprocess.Popen:
    return start_process([sys.executable, "-m", "sr3_env.openenv", "--port", str(port), *extra], port, "the OpenEnv server")


def serve_levels(args: argparse.Namespace, queries: list[str]) -> tuple[list[dict], dict]:
    from sr3_env.serving.thread import free_port

    port, key = free_port(), "bench-key"
    headers = {"Authorization": f"Bearer {key}"}
    process = start_server(args.model, port, ["--corpus", "semanlink", "--corpus-docs", "200", "--max-queue",
                                              str(args.max_queue), "--max-batch", "32", "--api-key", key])
    url = f"http://127.0.0.1:{port}"
    rows, sent = [], {"/v1/embeddings": 0, "/retrieve": 0}
    try:
        bodies = {"/v1/embeddings": [{"model": "SmolLM2-135M-Instruct", "input": q} for q in queries],
                  "/retrieve": [{"queries": [q], "topk": 3} for q in queries]}
        import httpx

        model = httpx.get(f"{url}/v1/models", headers=headers).json()["data"][0]["id"]
        for body in bodies["/v1/embeddings"]:
            body["model"] = model
        for route in ("/v1/embeddings", "/retrieve"):
            for clients in args.levels:
                before, rss0 = scrape(url, headers), rss_mib(process.pid)
                started = time.monotonic()
                outcomes = asyncio.run(http_level(url, route, bodies[route], headers, clients, args.per_client,
                                                  args.seconds, args.timeout))
                elapsed, after = time.monotonic() - started, scrape(url, headers)
                batches = counted(after, "sr3_batch_size_count") - counted(before, "sr3_batch_size_count")
                texts = counted(after, "sr3_batch_size_sum") - counted(before, "sr3_batch_size_sum")
                sent[route] += len(outcomes)
                rows.append({"route": route, **summarise(clients, elapsed, outcomes, (rss0, rss_mib(process.pid)),
                                                         texts / max(batches, 1))})
                print(json.dumps(rows[-1]), flush=True)
        final = scrape(url, headers)
        check = {route: {"sent": n, "counted": counted(final, "sr3_requests_total", route=route)} for route, n in sent.items()}
    finally:
        stop_process(process)
    return rows, check


def openenv_levels(args: argparse.Namespace) -> tuple[list[dict], dict, int]:
    import httpx
    import openenv.core.generic_client  # noqa: F401  (its import takes seconds: not inside a timed level)

    from sr3_env import load_dataset
    from sr3_env.serving.thread import free_port

    port = free_port()
    process = start_openenv(port, ["--encoder", args.encoder, "--max-concurrent-envs", str(max(args.levels) + 8),
                                   "--max-queue", str(args.max_queue), "--top-k", "100"])
    url = f"http://127.0.0.1:{port}"
    query_ids = list(load_dataset("semanlink").query_ids)
    rows, sent = [], 0
    try:
        dim = int(httpx.get(f"{url}/info").json()["dim"])
        for clients in args.levels:
            before, rss0 = scrape(url, {}), rss_mib(process.pid)
            started = time.monotonic()
            outcomes = asyncio.run(ws_level(url, query_ids, dim, clients, args.per_client, args.seconds, args.timeout))
            elapsed, after = time.monotonic() - started, scrape(url, {})
            batches = counted(after, "sr3_batch_size_count") - counted(before, "sr3_batch_size_count")
            steps = counted(after, "sr3_steps_scored_total") - counted(before, "sr3_steps_scored_total")
            sent += sum(status == "200" for status, _ in outcomes)
            rows.append({"route": "/ws reset+step", **summarise(clients, elapsed, outcomes, (rss0, rss_mib(process.pid)),
                                                                 steps / max(batches, 1))})
            print(json.dumps(rows[-1]), flush=True)
        check = {"/ws steps": {"sent": sent, "counted": counted(scrape(url, {}), "sr3_steps_scored_total")}}
    finally:
        stop_process(process)
    return rows, check, dim


def in_process_embedder(model: str, queries: list[str], batch: int) -> float:
    """Queries per second of the embedder itself, in batches of ``batch``."""
    from sr3_agent.model.embedder import ReasoningEmbedder

    embedder = ReasoningEmbedder.from_pretrained(None if model == "base" else model)
    embedder.encode_queries(queries[:batch])  # warm-up: the shared prefix's cache
    started = time.perf_counter()
    for start in range(0, len(queries), batch):
        embedder.encode_queries(queries[start:start + batch])
    return len(queries) / (time.perf_counter() - started)


def in_process_env(encoder: str, dim: int, count: int, batch: int) -> float:
    """Steps per second of the vector environment itself, in batches of ``batch``."""
    import gymnasium as gym

    import sr3_env  # noqa: F401

    env = gym.make_vec("RetrievalEmbed-v0", num_envs=batch, vectorization_mode="vector_entry_point", encoder=encoder)
    env.reset(seed=0)
    actions = np.random.default_rng(0).normal(size=(batch, dim)).astype(np.float32)
    env.step(actions)
    started = time.perf_counter()
    for _ in range(max(1, count // batch)):
        env.step(actions)
    return max(1, count // batch) * batch / (time.perf_counter() - started)


def markdown(rows: list[dict]) -> str:
    lines = ["| route | clients | answered/s | p50 ms | p99 ms | by status | RSS start → end MiB | mean batch |",
             "|---|---:|---:|---:|---:|---|---|---:|"]
    for row in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(row["by_status"].items()))
        lines.append(f"| {row['route']} | {row['clients']} | {row['answered_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
                     f"{statuses} | {row['rss_start_mib']} → {row['rss_end_mib']} | {row['mean_batch']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=list(LEVELS))
    parser.add_argument("--seconds", type=float, default=15.0, help="Longest a level sends requests.")
    parser.add_argument("--per-client", type=int, default=50, help="Most requests per client and level.")
    parser.add_argument("--timeout", type=float, default=60.0, help="A request's time bound, in seconds.")
    parser.add_argument("--max-queue", type=int, default=64, help="The servers' --max-queue.")
    parser.add_argument("--encoder", default="minilm", help="The OpenEnv server's document encoder: minilm, hashing or a "
                        "sentence-transformers folder.")
    parser.add_argument("--output", default="benchmarks/results/bench_serve_load.json")
    args = parser.parse_args(argv)

    from sr3_env import load_dataset

    queries = list(load_dataset("wordnet-revdict").query_texts[:512])
    serve_rows, serve_check = serve_levels(args, queries)
    env_rows, env_check, dim = openenv_levels(args)
    at_64 = {row["route"]: row for row in serve_rows + env_rows if row["clients"] == 64}
    reference = {}
    if "/v1/embeddings" in at_64:
        row = at_64["/v1/embeddings"]
        local = in_process_embedder(args.model, queries[:256], max(1, round(row["mean_batch"])))
        reference["/v1/embeddings"] = {"server_per_s": row["answered_per_s"], "in_process_per_s": round(local, 2),
                                       "batch": max(1, round(row["mean_batch"])),
                                       "ratio": round(local / max(row["answered_per_s"], 1e-9), 2)}
    if "/ws reset+step" in at_64:
        row = at_64["/ws reset+step"]
        local = in_process_env(args.encoder, dim, 2048, max(1, round(row["mean_batch"])))
        reference["/ws reset+step"] = {"server_per_s": row["answered_per_s"], "in_process_per_s": round(local, 2),
                                       "batch": max(1, round(row["mean_batch"])),
                                       "ratio": round(local / max(row["answered_per_s"], 1e-9), 2)}
    results = {"environment": environment(), "settings": vars(args), "levels": serve_rows + env_rows,
               "metrics_check": {**serve_check, **env_check}, "in_process": reference}
    print(markdown(serve_rows + env_rows))
    print("\n| route | server /s at 64 clients | in-process /s (same batch) | in-process ÷ server |\n|---|---:|---:|---:|")
    for route, row in reference.items():
        print(f"| {route} | {row['server_per_s']} | {row['in_process_per_s']} (batch {row['batch']}) | {row['ratio']} |")
    print("\n/metrics against requests sent:", json.dumps(results["metrics_check"]))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
