"""`sr3 serve`: a real uvicorn server on a loopback port, driven by the official `openai` client and by
plain httpx; embeddings equal the embedder's, /retrieve has Search-R1's shape and ranks as an exact
search does, concurrent requests are batched, bad requests get a 4xx that says why, and the server
shuts down gracefully (in a thread, and as `sr3 serve` under SIGTERM)."""

from __future__ import annotations

import base64
import copy
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from sr3_agent.config import ServeConfig
from sr3_env.serving.batcher import BatcherClosed, MicroBatcher
from sr3_agent.serving.run import ServerThread, build_service, create_app_for, free_port
from conftest import write_beir

NAME = "tiny-random"


@pytest.fixture(scope="module")
def served(_tiny_embedder_session, tmp_path_factory):
    """One server for the module: the tiny model, the tiny BEIR corpus, small limits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SR3_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        corpus = write_beir(tmp_path_factory.mktemp("beir") / "tiny")
        config = ServeConfig(model="base", served_name=NAME, corpus=str(corpus), max_inputs=8, max_chars=200,
                             max_topk=5, reasoning_tokens=6, max_batch=16, batch_wait_ms=30)
        embedder = copy.deepcopy(_tiny_embedder_session)
        service = build_service(config, embedder=embedder)
        with ServerThread(create_app_for(config, service)) as server:
            yield server, service, embedder


@pytest.fixture(scope="module")
def openai_client(served):
    from openai import OpenAI

    server, _, _ = served
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_client_gets_the_embedders_vectors(served, openai_client):
    _, _, embedder = served
    texts = ["which pets descend from wolves", "capital of france"]
    response = openai_client.embeddings.create(model=NAME, input=texts)  # the client asks for base64
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert [item.index for item in response.data] == [0, 1] and response.model == NAME
    assert np.abs(vectors - embedder.encode_queries(texts)).max() <= 1e-5
    assert response.usage.prompt_tokens == response.usage.total_tokens > len(texts)
    as_floats = openai_client.embeddings.create(model=NAME, input=texts[0], encoding_format="float",
                                                extra_body={"input_type": "document"})
    assert np.abs(np.array(as_floats.data[0].embedding) - embedder.encode_documents(texts[:1])[0]).max() <= 1e-5


def test_a_base_url_per_side_embeds_documents_and_queries_with_their_prompts(served):
    """A RAG framework's OpenAI client sends no input_type: /documents/v1 and /queries/v1 give each side its prompt."""
    from openai import OpenAI, BadRequestError

    server, _, embedder = served
    texts = ["dogs descend from wolves", "paris is the capital of france"]
    clients = {side: OpenAI(base_url=f"{server.url}/{side}/v1", api_key="unused", max_retries=0, timeout=60)
               for side in ("documents", "queries")}
    assert [m.id for m in clients["documents"].models.list().data] == [NAME]
    documents = np.array([d.embedding for d in clients["documents"].embeddings.create(model=NAME, input=texts).data])
    queries = np.array([d.embedding for d in clients["queries"].embeddings.create(model=NAME, input=texts).data])
    assert np.abs(documents - embedder.encode_documents(texts)).max() <= 1e-5
    assert np.abs(queries - embedder.encode_queries(texts, reasoning=False)).max() <= 1e-5
    assert np.abs(documents - queries).max() > 1e-3  # two prompts, two vectors
    info = httpx.get(f"{server.url}/info").json()
    assert info["default_input_type"] == "query" and info["embedding_routes"]["/documents/v1/embeddings"] == "document"
    with pytest.raises(BadRequestError, match="This route embeds documents.*input_type 'query'"):
        clients["documents"].embeddings.create(model=NAME, input=texts, extra_body={"input_type": "query"})
    with pytest.raises(BadRequestError, match="never reasoned about"):
        clients["documents"].embeddings.create(model=NAME, input=texts, extra_body={"reasoning": True})


def test_reasoning_is_returned_beside_the_embedding(served, openai_client):
    _, _, embedder = served
    response = openai_client.embeddings.create(
        model=NAME, input=["rules of chess"], extra_body={"reasoning": True, "return_reasoning": True,
                                                          "max_reasoning_tokens": 4})
    item = response.data[0]
    assert isinstance(item.model_extra["reasoning"], str)
    assert len(item.embedding) == embedder.dim and abs(np.linalg.norm(item.embedding) - 1) < 1e-4
    assert response.usage.total_tokens >= response.usage.prompt_tokens
    plain = openai_client.embeddings.create(model=NAME, input=["rules of chess"], extra_body={"reasoning": True})
    assert "reasoning" not in (plain.data[0].model_extra or {})
    assert np.abs(np.array(plain.data[0].embedding) - embedder.encode_queries(["rules of chess"], reasoning=True,
                                                                               max_new_tokens=6)[0]).max() <= 1e-5


def test_auto_lets_the_model_decide_whether_to_reason(served, openai_client):
    import openai

    _, _, embedder = served
    texts = ["rules of chess", "a small dog"]
    response = openai_client.embeddings.create(model=NAME, input=texts, encoding_format="float",
                                               extra_body={"reasoning": "auto", "max_reasoning_tokens": 6})
    expected, _ = embedder.encode_queries_auto(texts, max_new_tokens=6)
    assert np.abs(np.array([item.embedding for item in response.data]) - expected).max() <= 1e-5
    with pytest.raises(openai.BadRequestError):  # neither a boolean nor "auto"
        openai_client.embeddings.create(model=NAME, input=texts, extra_body={"reasoning": "sometimes"})


def test_retrieve_has_search_r1_shape_and_exact_ranks(served):
    server, service, embedder = served
    queries = ["programming language", "capital city of a european country"]
    body = httpx.post(f"{server.url}/retrieve", json={"queries": queries, "topk": 3, "return_scores": True},
                      timeout=60).json()
    assert list(body) == ["result"] and len(body["result"]) == 2
    data = service.index.dataset
    expected = embedder.encode_queries(queries) @ embedder.encode_documents(data.documents).T
    for hits, scores in zip(body["result"], expected):
        assert [set(hit) for hit in hits] == [{"document", "score"}] * 3
        assert [set(hit["document"]) for hit in hits] == [{"id", "contents"}] * 3
        best = np.argsort(-scores)[:3]
        assert [hit["document"]["id"] for hit in hits] == [data.doc_ids[r] for r in best]
        assert np.allclose([hit["score"] for hit in hits], scores[best], atol=1e-5)
        row = data.doc_row[hits[0]["document"]["id"]]
        assert hits[0]["document"]["contents"] == f"{data.titles[row]}\n{data.texts[row]}"  # title on the first line
    unscored = httpx.post(f"{server.url}/retrieve", json={"queries": queries[:1]}, timeout=60).json()
    assert len(unscored["result"][0]) == 3 and set(unscored["result"][0][0]) == {"id", "contents"}  # default topk 3


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served):
    server, service, embedder = served
    texts = [f"query number {i} about cats and dogs" for i in range(24)]
    expected = embedder.encode_queries(texts)
    before = copy.copy(service.batcher.stats)

    def ask(i: int) -> np.ndarray:
        response = httpx.post(f"{server.url}/v1/embeddings", json={"model": NAME, "input": texts[i]}, timeout=60)
        response.raise_for_status()
        return np.array(response.json()["data"][0]["embedding"], dtype=np.float32)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, range(len(texts))))
    assert np.abs(np.stack(answers) - expected).max() <= 1e-5
    batches = service.batcher.stats.batches - before.batches
    assert service.batcher.stats.jobs - before.jobs == len(texts) and batches < len(texts)  # some batches were shared


BAD_EMBEDDING_REQUESTS = [
    ({"model": NAME, "input": ["a"], "temperature": 1}, 400, "temperature: unknown field"),
    ({"model": NAME}, 400, "input: Field required"),
    ({"model": NAME, "input": []}, 400, "'input' is empty"),
    ({"model": NAME, "input": ""}, 400, "'input[0]' is empty"),
    ({"model": NAME, "input": 5}, 400, "input"),
    ({"model": NAME, "input": [[1, 2, 3]]}, 400, "token-id arrays are not accepted"),
    ({"model": NAME, "input": ["x"] * 9}, 400, "at most 8 per request"),
    ({"model": NAME, "input": ["x" * 201]}, 400, "at most 200 per text"),
    ({"model": NAME, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": NAME, "input": "x", "dimensions": 7}, 400, "this model's embeddings have 32"),
    ({"model": NAME, "input": "x", "reasoning": True, "input_type": "document"}, 400, "reasoning applies to queries"),
    ({"model": NAME, "input": "x", "return_reasoning": True}, 400, "return_reasoning needs reasoning"),
    ({"model": NAME, "input": "x", "reasoning": True, "max_reasoning_tokens": 99}, 400, "at most 6"),
    ({"model": "gpt-4", "input": "x"}, 404, "this server serves 'tiny-random'"),
]


@pytest.mark.parametrize("body, status, words", BAD_EMBEDDING_REQUESTS)
def test_bad_embedding_requests_get_a_4xx_that_says_why(served, body, status, words):
    server, _, _ = served
    response = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=30)
    assert response.status_code == status
    assert words in response.json()["error"]["message"]


def test_other_bad_requests(served):
    server, _, _ = served
    cases = [
        (httpx.post(f"{server.url}/retrieve", json={"queries": ["a"], "topk": 6}), 400, "at most 5"),
        (httpx.post(f"{server.url}/retrieve", json={"queries": ["a"], "topk": 0}), 400, "topk"),
        (httpx.post(f"{server.url}/retrieve", json={"queries": "a"}), 400, "queries"),
        (httpx.post(f"{server.url}/retrieve", json={"query": ["a"]}), 400, "unknown field"),
        (httpx.post(f"{server.url}/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}),
         400, "not valid JSON"),
        (httpx.post(f"{server.url}/v1/embeddings", content=b"x" * 100_000, headers={"content-type": "application/json"}),
         413, "at most"),  # more than 8 texts of 200 characters could ever need
        (httpx.get(f"{server.url}/v2/nothing"), 404, "Not Found"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"  # still serving


def test_openai_client_raises_the_servers_message(served, openai_client):
    import openai

    with pytest.raises(openai.BadRequestError, match="token-id arrays are not accepted"):
        openai_client.embeddings.create(model=NAME, input=[[1, 2]])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        openai_client.embeddings.create(model="text-embedding-3-small", input="x")
    assert [m.id for m in openai_client.models.list()] == [NAME]


def test_health(served):
    server, service, _ = served
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == NAME and health["dim"] == service.dim
    assert health["corpus"]["documents"] == 12


def test_shutdown_finishes_requests_in_flight(tiny_embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path))
    config = ServeConfig(served_name=NAME, batch_wait_ms=300)  # the request waits in the batcher while we stop
    service = build_service(config, embedder=tiny_embedder)
    server = ServerThread(create_app_for(config, service)).__enter__()
    results = {}
    asking = threading.Thread(target=lambda: results.update(
        response=httpx.post(f"{server.url}/v1/embeddings", json={"model": NAME, "input": "a"}, timeout=30)))
    asking.start()
    time.sleep(0.1)
    server.stop()
    asking.join(30)
    assert results["response"].status_code == 200 and not server.thread.is_alive()
    with pytest.raises(BatcherClosed):
        service.batcher.submit(("direct", "query"), ["late"])


def test_sr3_serve_command_stops_on_sigterm(tiny_embedder, tmp_path):
    """The real command in its own process: it answers, then SIGTERM ends it cleanly (exit 0)."""
    model = tiny_embedder.save_pretrained(tmp_path / "model")
    port = free_port()
    env = {**os.environ, "SR3_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "sr3_agent.cli", "serve", "--model", str(model), "--port",
                                str(port), "--device", "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.stdout.read().decode()) from None
                time.sleep(0.3)
        assert health["model"] == "model"
        response = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"model": "model", "input": "b"}, timeout=30)
        assert response.status_code == 200
        vector = np.frombuffer(base64.b64decode(httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings", json={"model": "model", "input": "b", "encoding_format": "base64"},
            timeout=30).json()["data"][0]["embedding"]), dtype="<f4")
        assert np.allclose(vector, response.json()["data"][0]["embedding"], atol=1e-7)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_batcher_routes_results_and_errors_per_kind():
    calls = []

    def run(kind, texts):
        calls.append((kind, list(texts)))
        if kind == "broken":
            raise ValueError("no")
        return [f"{kind}:{t}" for t in texts]

    batcher = MicroBatcher(run, max_batch=100, max_wait=0.2).start()
    futures = [batcher.submit("a", ["1", "2"]), batcher.submit("b", ["3"]), batcher.submit("a", ["4"]),
               batcher.submit("broken", ["5"])]
    assert futures[0].result(5) == ["a:1", "a:2"] and futures[2].result(5) == ["a:4"] and futures[1].result(5) == ["b:3"]
    with pytest.raises(ValueError, match="no"):
        futures[3].result(5)
    assert ("a", ["1", "2", "4"]) in calls  # one call for both jobs of kind a
    queued = batcher.submit("a", ["6"])
    batcher.close()
    assert queued.result(5) == ["a:6"]  # queued before close: still answered
    with pytest.raises(BatcherClosed):
        batcher.submit("a", ["7"])


def test_a_failure_inside_the_model_is_a_json_500_and_the_server_lives_on(tiny_embedder, monkeypatch):
    config = ServeConfig(served_name=NAME)
    service = build_service(config, embedder=tiny_embedder)
    calls = {"n": 0}
    real = tiny_embedder.encode_queries

    def flaky(texts, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(tiny_embedder, "encode_queries", flaky)
    with ServerThread(create_app_for(config, service)) as server:
        failed = httpx.post(f"{server.url}/v1/embeddings", json={"model": NAME, "input": "a"}, timeout=30)
        assert failed.status_code == 500 and "out of memory (simulated)" in failed.json()["error"]["message"]
        assert httpx.post(f"{server.url}/v1/embeddings", json={"model": NAME, "input": "a"}, timeout=30).status_code == 200
