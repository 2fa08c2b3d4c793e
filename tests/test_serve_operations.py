"""`sr3 serve` under load and in production: a bounded queue (429 with Retry-After, 413 for a request
larger than the queue), a Bearer key (401; /health open), Prometheus /metrics whose counts equal the
requests sent, and /info. A real uvicorn server on a loopback port with the tiny model."""

from __future__ import annotations

import copy
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sr3_agent.config import ServeConfig
from sr3_agent.serving.run import ServerThread, build_service, create_app_for
from sr3_env.serving.batcher import BatcherClosed, JobTooLarge, MicroBatcher, QueueFull

NAME = "tiny-random"
KEY = "s3cret-key"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and ",".join(sorted((match.group(2) or "").split(","))).strip(",") == wanted:
            return float(match.group(3))
    return 0.0


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture()
def gated(_tiny_embedder_session):
    """A server whose encoder waits on a gate: requests pile up in its queue (max 3 texts) until it opens."""
    embedder = copy.deepcopy(_tiny_embedder_session)
    gate, entered = threading.Event(), threading.Event()
    encode = embedder.encode_queries

    def gated_encode(*args, **kwargs):
        entered.set()
        gate.wait(60)
        return encode(*args, **kwargs)

    embedder.encode_queries = gated_encode
    config = ServeConfig(served_name=NAME, max_queue=3, max_batch=1, batch_wait_ms=0, api_key=KEY)
    service = build_service(config, embedder=embedder)
    with ServerThread(create_app_for(config, service)) as server:
        yield server, service, gate, entered
        gate.set()


def post(server, texts, key=KEY):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.url}/v1/embeddings", json={"model": NAME, "input": texts}, headers=headers, timeout=60)


def test_a_full_queue_answers_429_with_retry_after_and_an_oversized_request_413(gated):
    server, service, gate, entered = gated
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server, ["held by the worker"])
        entered.wait(30)
        second = pool.submit(post, server, ["a", "b", "c"])  # fills the queue (3 texts waiting)
        wait_for(lambda: service.batcher.waiting == 3)
        refused = post(server, ["one more"])
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "--max-queue" in refused.json()["error"]["message"] and refused.json()["error"]["code"] == "queue_full"
        too_large = post(server, ["w", "x", "y", "z"])  # more texts than the whole queue: never queued
        assert too_large.status_code == 413 and "at most 3" in too_large.json()["error"]["message"]
        assert service.batcher.waiting == 3
        gate.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert metric(text, "sr3_requests_total", route="/v1/embeddings", status="200") == 2
    assert metric(text, "sr3_requests_total", route="/v1/embeddings", status="429") == 1
    assert metric(text, "sr3_requests_total", route="/v1/embeddings", status="413") == 1
    assert metric(text, "sr3_texts_encoded_total") == 4 and metric(text, "sr3_queue_depth") == 0
    assert metric(text, "sr3_batch_size_count") == 2  # max_batch 1 text: the 3-text job still runs whole


def test_the_api_key_is_required_everywhere_but_health(gated):
    server, _, gate, _ = gated
    gate.set()
    assert httpx.get(f"{server.url}/health").status_code == 200
    for key in (None, "wrong"):
        answer = post(server, ["q"], key=key)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in answer.json()["error"]["message"]
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/info").status_code == 401
    assert post(server, ["q"]).status_code == 200
    from openai import AuthenticationError, OpenAI

    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).embeddings.create(model=NAME, input="q")
    good = OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0).embeddings.create(model=NAME, input="q")
    assert len(good.data) == 1
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert metric(text, "sr3_requests_total", route="/v1/embeddings", status="401") == 3
    assert metric(text, "sr3_requests_total", route="/health", status="200") == 1


def test_info_says_what_is_served(gated):
    server, service, _, _ = gated
    info = httpx.get(f"{server.url}/info", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["model"] == NAME and info["dimension"] == service.dim and info["max_queue"] == 3
    assert info["max_length"] == service.embedder.max_length and info["precision"]["weights"] == "float32"
    assert info["version"] and info["max_inputs"] == 256


def test_api_key_comes_from_the_environment(monkeypatch, _tiny_embedder_session):
    monkeypatch.setenv("SR3_API_KEY", "from-env")
    config = ServeConfig(served_name=NAME)
    service = build_service(config, embedder=copy.deepcopy(_tiny_embedder_session))
    with ServerThread(create_app_for(config, service)) as server:
        assert post(server, ["q"], key=None).status_code == 401
        assert post(server, ["q"], key="from-env").status_code == 200
    with pytest.raises(ValueError, match="api_key is empty"):
        ServeConfig(api_key=" ")


def test_batcher_bounds_its_queue_and_refuses_at_once():
    gate = threading.Event()

    def run(kind, items):
        gate.wait(30)
        return items

    batcher = MicroBatcher(run, max_batch=1, max_wait=0, max_queue=4, unit="steps").start()
    try:
        held = batcher.submit("k", [0])
        wait_for(lambda: batcher.waiting == 0)  # the worker took it and waits on the gate
        queued = [batcher.submit("k", [1, 2]), batcher.submit("k", [3, 4])]
        assert batcher.waiting == 4
        with pytest.raises(QueueFull, match="4 steps are waiting") as full:
            batcher.submit("k", [5])
        assert 1 <= full.value.retry_after <= 60
        with pytest.raises(JobTooLarge, match="holds 5 steps"):
            batcher.submit("k", [1, 2, 3, 4, 5])
        gate.set()
        assert held.result(30) == [0] and [f.result(30) for f in queued] == [[1, 2], [3, 4]]
        assert batcher.waiting == 0 and batcher.submit("k", [5]).result(30) == [5]
    finally:
        gate.set()
        batcher.close()
    with pytest.raises(ValueError, match="max_queue"):
        MicroBatcher(run, max_queue=0)


def test_call_runs_on_the_worker_between_batches_and_counts_no_item():
    threads = []

    def run(kind, items):
        threads.append(threading.current_thread().name)
        return items

    batcher = MicroBatcher(run, max_batch=4, max_wait=0, max_queue=2, name="sr3-test-worker").start()
    try:
        assert batcher.call(lambda: threading.current_thread().name).result(30) == "sr3-test-worker"
        assert batcher.submit("k", [1, 2]).result(30) == [1, 2] and threads == ["sr3-test-worker"]
        with pytest.raises(ZeroDivisionError):  # the function's own error reaches the caller
            batcher.call(lambda: 1 / 0).result(30)
        assert batcher.waiting == 0 and batcher.submit("k", [3, 4]).result(30) == [3, 4]  # the worker lives on
    finally:
        batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.call(lambda: None)


def test_the_server_loads_its_model_and_index_on_the_worker_thread(monkeypatch, _tiny_embedder_session):
    from sr3_agent.serving.corpus import CorpusIndex

    built_on = []
    original = CorpusIndex.build

    def build(*args, **kwargs):
        built_on.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(CorpusIndex, "build", build)
    service = build_service(ServeConfig(model="base", corpus="semanlink", corpus_docs=20),
                            embedder=copy.deepcopy(_tiny_embedder_session))
    try:
        assert built_on == [service.batcher._thread.name] and built_on[0] != threading.main_thread().name
        assert service.index is not None and service.embedder is not None
    finally:
        service.close()
