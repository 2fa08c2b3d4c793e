"""The OpenEnv server of RetrievalEmbed-v0 and RetrievalRefine-v0: OpenEnv's own `GenericEnvClient`
over a real uvicorn server on a loopback port. Concurrent sessions over one shared index get the
ranks and rewards of one in-process vector environment; the key, the limits and the errors hold."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time

import gymnasium as gym
import httpx
import numpy as np
import pytest

pytest.importorskip("openenv")

from openenv.core.generic_client import GenericEnvClient  # noqa: E402

import sr3_env  # noqa: E402,F401
from sr3_env.openenv import EnvironmentHub, Sr3EnvClient, create_app  # noqa: E402
from sr3_env.refine import RetrievalRefineEnv  # noqa: E402
from sr3_env.serving.thread import ServerThread, free_port  # noqa: E402

SETTINGS = {"dataset": "semanlink", "encoder": "hashing", "top_k": 20}
SESSIONS = 12


def metric(text: str, name: str, **labels: str) -> float:
    wanted = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and sorted(filter(None, (match.group(2) or "").split(","))) == wanted:
            return float(match.group(3))
    return 0.0


@pytest.fixture(scope="module")
def embed_server():
    hub = EnvironmentHub("RetrievalEmbed-v0", max_batch=64, max_wait=0.05, **SETTINGS)
    with ServerThread(create_app(hub, max_concurrent_envs=SESSIONS + 2)) as server:
        yield server, hub


def episodes(url: str, query_ids: list[str], actions: np.ndarray, turns: int = 1, client=GenericEnvClient, **options):
    """One session per query, all at once: reset on the query, then ``turns`` steps; the results of each."""

    async def one(query_id: str, action: np.ndarray) -> list:
        async with client(base_url=url, **options) as env:
            first = await env.reset(query_id=query_id)
            steps = [first]
            for turn in range(turns):
                steps.append(await env.step({"embedding": (action * (turn + 1) if turn else action).tolist()}))
            return steps

    async def all_of_them() -> list:
        return await asyncio.gather(*(one(q, a) for q, a in zip(query_ids, actions)))

    return asyncio.run(all_of_them())


def test_concurrent_sessions_rank_as_one_vector_environment(embed_server):
    server, hub = embed_server
    dataset = hub.task.dataset
    query_ids = list(dataset.query_ids[:SESSIONS])
    actions = np.random.default_rng(0).normal(size=(SESSIONS, hub.task.dim)).astype(np.float32)
    actions[:4] = hub.task.encoder.encode_documents([dataset.query_text(q) for q in query_ids[:4]])  # good ones too
    batches_before = hub.batcher.stats.batches

    results = episodes(server.url, query_ids, actions)

    vector = gym.make_vec("RetrievalEmbed-v0", num_envs=SESSIONS, vectorization_mode="vector_entry_point", **SETTINGS)
    vector.reset(options={"query_ids": query_ids})
    _, rewards, _, _, infos = vector.step(actions)
    for i, (first, step) in enumerate(results):
        assert first.observation["query"] == dataset.query_text(query_ids[i]) and first.reward is None and not first.done
        info = step.observation["info"]
        expected = infos["final_info"]
        assert step.done and step.reward == pytest.approx(float(rewards[i]), abs=1e-6)
        assert info["gold_ranks"] == expected["gold_ranks"][i] and info["top_ids"] == list(expected["top_ids"][i])
        assert info["query_id"] == query_ids[i]
        assert info["metrics"] == pytest.approx({name: float(v[i]) for name, v in expected["metrics"].items()
                                                  if not name.startswith("_")})
    assert any(r.observation["info"]["rank"] == 1 for _, r in results)  # the encoded queries find their documents
    assert hub.batcher.stats.batches - batches_before < SESSIONS  # steps of concurrent sessions shared searches


def test_refine_sessions_turn_as_the_in_process_environment():
    hub = EnvironmentHub("RetrievalRefine-v0", max_turns=2, feedback_k=2, **SETTINGS)
    dataset = hub.task.dataset
    query_ids = list(dataset.query_ids[:4])
    actions = np.random.default_rng(1).normal(size=(4, hub.task.dim)).astype(np.float32)
    with ServerThread(create_app(hub, max_concurrent_envs=4)) as server:
        results = episodes(server.url, query_ids, actions, turns=2)
    env = RetrievalRefineEnv(max_turns=2, feedback_k=2, index=hub.task.index, **SETTINGS)
    for query_id, action, (_, turn1, turn2) in zip(query_ids, actions, results):
        env.reset(options={"query_id": query_id})
        observation1, reward1, done1, _, info1 = env.step(action)
        observation2, reward2, done2, _, _ = env.step(action * 2)
        assert turn1.observation["documents"] == list(observation1["documents"]) and len(observation1["documents"]) == 2
        assert (turn1.reward, turn1.done, turn2.done) == (pytest.approx(reward1), False, True)
        assert turn2.reward == pytest.approx(reward2) and turn1.observation["info"]["turn"] == 1
        assert turn2.observation["documents"] == list(observation2["documents"]) and turn2.observation["turn"] == 2


def test_metrics_count_the_steps_and_sessions(embed_server):
    server, hub = embed_server
    before = httpx.get(f"{server.url}/metrics").text
    query_ids = list(hub.task.dataset.query_ids[:5])
    episodes(server.url, query_ids, np.ones((5, hub.task.dim), dtype=np.float32))
    after = httpx.get(f"{server.url}/metrics").text
    steps = metric(after, "sr3_steps_scored_total") - metric(before, "sr3_steps_scored_total")
    sessions = (metric(after, "sr3_requests_total", route="/ws", status="101")
                - metric(before, "sr3_requests_total", route="/ws", status="101"))
    assert steps == 5 and sessions == 5
    info = httpx.get(f"{server.url}/info").json()
    assert info["env_id"] == "RetrievalEmbed-v0" and info["dim"] == hub.task.dim and info["max_concurrent_envs"] == 14
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert set(httpx.get(f"{server.url}/schema").json()["action"]["properties"]) >= {"embedding"}


def test_bad_actions_and_stateless_steps_say_what_to_fix(embed_server):
    server, hub = embed_server

    async def run() -> None:
        async with GenericEnvClient(base_url=server.url) as env:
            await env.reset(seed=3)
            with pytest.raises(RuntimeError, match=r"shape \(3,\); expected \(256,\)"):
                await env.step({"embedding": [1.0, 2.0, 3.0]})
            with pytest.raises(RuntimeError, match="NaN or inf"):
                await env.step({"embedding": [float("nan")] * hub.task.dim})
            with pytest.raises(RuntimeError, match="Unknown reset argument"):
                await env.reset(query="not an option")
            with pytest.raises(RuntimeError, match="Did you mean"):
                await env.reset(query_id=hub.task.dataset.query_ids[0] + "x")
            result = await env.step({"embedding": [1.0] * hub.task.dim})  # the episode survived the bad actions
            assert result.done

    asyncio.run(run())
    answer = httpx.post(f"{server.url}/step", json={"action": {"embedding": [1.0] * hub.task.dim}})
    assert answer.status_code == 400 and "/ws WebSocket" in answer.json()["error"]["message"]
    assert httpx.post(f"{server.url}/reset", json={}).json()["observation"]["query"]


def test_sessions_are_bounded_and_idle_ones_are_closed():
    hub = EnvironmentHub("RetrievalEmbed-v0", **SETTINGS)
    with ServerThread(create_app(hub, max_concurrent_envs=1, session_timeout=0.5)) as server:
        async def run() -> None:
            async with GenericEnvClient(base_url=server.url) as first:
                await first.reset(seed=0)
                from websockets.asyncio.client import connect

                async with connect(server.url.replace("http", "ws") + "/ws") as second:  # refused, with the reason
                    refusal = json.loads(await second.recv())
                assert refusal["type"] == "error" and refusal["data"]["code"] == "CAPACITY_REACHED"
                assert refusal["data"]["max_sessions"] == 1
                await asyncio.sleep(6)  # the reaper looks every 5 s at the least
                with pytest.raises(RuntimeError, match="session-timeout"):
                    await first.step({"embedding": [1.0] * hub.task.dim})
            async with GenericEnvClient(base_url=server.url) as third:  # the slot is free again
                assert (await third.reset(seed=0)).observation["query"]

        asyncio.run(run())


def test_the_api_key_guards_the_websocket(monkeypatch):
    monkeypatch.setenv("SR3_API_KEY", "k3y")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "sr3_env.openenv", "--port", str(port), "--encoder", "hashing",
                                "--top-k", "10", "--max-concurrent-envs", "2"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{url}/info").status_code == 401
        assert httpx.get(f"{url}/info", headers={"Authorization": "Bearer k3y"}).json()["encoder"] == "HashingEncoder"

        async def run() -> None:
            with pytest.raises(ConnectionError, match="403"):
                await GenericEnvClient(base_url=url).connect()
            async with Sr3EnvClient(base_url=url, api_key="k3y") as env:
                await env.reset(seed=1)
                assert (await env.step({"embedding": [0.5] * 256})).done

        asyncio.run(run())
    finally:
        process.terminate()
        assert process.wait(60) == 0


@pytest.fixture
def remote_and_local(tiny_embedder, tiny_beir):
    """`RemoteRetrievalReward` against a server whose encoder is the embedder, beside the in-process reward."""
    from sr3_agent.training.trl_reward import RemoteRetrievalReward, RetrievalReward
    from sr3_env import load_dataset

    data = load_dataset(tiny_beir, split="test")
    hub = EnvironmentHub("RetrievalEmbed-v0", max_batch=64, max_wait=0.05, dataset=data, encoder=tiny_embedder,
                         reward="log_rank", top_k=3)
    with ServerThread(create_app(hub, max_concurrent_envs=8)) as server:
        yield (RemoteRetrievalReward(tiny_embedder, server.url, connections=3),
               RetrievalReward(tiny_embedder, data, reward="log_rank", top_k=3), data, hub)


def test_the_remote_reward_equals_the_in_process_one(tiny_embedder, remote_and_local):
    remote, local, data, hub = remote_and_local
    rows = [0, 0, 1, 2, 1]
    prompts = [tiny_embedder.prompt_text(data.query_texts[i], tiny_embedder.prompts.reasoning) for i in rows]
    completions = ["cats and dogs", "wolves", "cities of europe", "", "rivers"]
    ids = [data.query_ids[i] for i in rows]
    logged = {}
    values = remote(prompts=prompts, completions=completions, query_id=ids, log_metric=logged.__setitem__)
    assert values == pytest.approx(local(prompts=prompts, completions=completions, query_id=ids), abs=1e-5)
    assert [info["rank"] for info in remote.last_infos] == list(local.last_info["rank"])
    assert logged["sr3/rank_mean"] == pytest.approx(np.mean(local.last_info["rank"]))
    assert hub.batcher.stats.texts == len(rows)  # every completion was one step on the server


def test_the_remote_reward_says_what_went_wrong(tiny_embedder, remote_and_local):
    from sr3_agent.training.trl_reward import RemoteRetrievalReward
    from sr3_env.errors import Sr3Error

    remote, _, data, _ = remote_and_local
    with pytest.raises(Sr3Error, match="refused an episode.*no-such-query"):
        remote(prompts=["p"], completions=["c"], query_id=["no-such-query"])
    with pytest.raises(Sr3Error, match="no 'query_id' column"):
        remote(prompts=["p"], completions=["c"])
    unreachable = RemoteRetrievalReward(tiny_embedder, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Sr3Error, match="Could not reach the OpenEnv server.*python -m sr3_env.openenv"):
        unreachable(prompts=["p"], completions=["c"], query_id=[data.query_ids[0]])
