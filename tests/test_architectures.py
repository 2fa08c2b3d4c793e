"""Attention windows, architecture by architecture: where a shared-prefix layout would not be exact the
embedder takes the plain path and says so once; where it is exact the fast path runs, sliding-window
caches included; the sentence-transformers export equals the embedder for every family.

The fast-path-equals-plain-path tests of every family are in `test_prefix_reuse.py`.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from conftest import LONG_WINDOW
from sr3_agent.model.tiny_models import SHORT_WINDOW, TINY_FAMILIES, sliding_families
from sr3_agent.model.kvcache import attention_window, layout_is_exact
from sr3_env import load_dataset

ATOL = 1e-4
SLIDING = sliding_families()


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    data = load_dataset("wordnet-revdict")
    documents = list(data.documents[:8])
    return {"documents": ["x", *documents, " ".join(documents) * 3], "queries": list(data.query_texts[:4])}


def plain(embedder):
    twin = copy.copy(embedder)
    twin.reuse_prefix = False
    return twin


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_the_window_is_read_from_each_config(_family_embedders, family):
    embedder = _family_embedders(family)
    expected = SHORT_WINDOW if family in SLIDING else None
    assert attention_window(embedder.model.config) == expected


def test_layout_is_exact_within_the_window_or_without_inner_padding():
    assert layout_is_exact(None, 10_000, padded_inside=True)
    assert layout_is_exact(48, 10_000, padded_inside=False)  # slot distances are position distances
    assert layout_is_exact(48, 47, padded_inside=True)
    assert not layout_is_exact(48, 48, padded_inside=True)  # a sliding cache layer keeps window - 1 slots


@pytest.mark.parametrize("family", SLIDING)
def test_a_window_shorter_than_the_layout_takes_the_plain_path_and_says_so_once(_family_embedders, texts, family,
                                                                               caplog):
    embedder = _family_embedders(family)
    embedder.batch_size = 5
    prefix = len(embedder.prefix_ids(embedder.prompts.document))
    lengths = [len(p) + 1 for p in embedder.prompt_ids(texts["documents"], embedder.prompts.document)]
    assert min(lengths) < SHORT_WINDOW - 1 < max(lengths) and prefix < SHORT_WINDOW  # some layouts fit, some do not
    with caplog.at_level(logging.WARNING, logger="sr3_agent.model.embedder"):
        fast = embedder.encode_documents(texts["documents"])
        reasoned = embedder.encode_queries(texts["queries"], reasoning=True, max_new_tokens=6)
        embedder.encode_documents(texts["documents"])
    np.testing.assert_allclose(fast, plain(embedder).encode_documents(texts["documents"]), atol=ATOL)
    np.testing.assert_allclose(reasoned, plain(embedder).encode_queries(texts["queries"], reasoning=True, max_new_tokens=6),
                               atol=ATOL)
    assert embedder.window_fallbacks >= 1  # the reasoning at least (a batch of one prompt is exact at any length)
    notices = [r.getMessage() for r in caplog.records if "window" in r.getMessage()]
    assert len(notices) == 1 and f"window of {SHORT_WINDOW} tokens" in notices[0] and "plain path" in notices[0]


@pytest.mark.parametrize("family", SLIDING)
def test_a_window_longer_than_the_layout_keeps_the_fast_path(_family_embedders, texts, family, caplog):
    """Sliding-window cache layers on the fast path: documents, the reasoning's cache read and the RL
    grouped forward, each equal to the plain path."""
    from sr3_agent.training.rl import policy_forward

    embedder = _family_embedders(family, window=LONG_WINDOW)
    assert attention_window(embedder.model.config) == LONG_WINDOW
    with caplog.at_level(logging.WARNING, logger="sr3_agent.model.embedder"):
        documents = embedder.encode_documents(texts["documents"])
        torch.manual_seed(0)
        rollout = embedder.generate_reasoning(texts["queries"], max_new_tokens=6, temperature=1.0, num_samples=2)
    assert not [r for r in caplog.records if "window" in r.getMessage()] and embedder.window_fallbacks == 0
    np.testing.assert_allclose(documents, plain(embedder).encode_documents(texts["documents"]), atol=ATOL)
    assert rollout.embeddings is not None  # read from the generation's cache
    with torch.no_grad():
        torch.testing.assert_close(rollout.embeddings, embedder.embed(rollout.input_ids, rollout.attention_mask),
                                   atol=ATOL, rtol=0)
        assert embedder.grouped_hidden_states(rollout) is not None
        grouped, grouped_embeddings = policy_forward(embedder, rollout, grouped=True)
        whole, whole_embeddings = policy_forward(embedder, rollout, grouped=False)
    mask = rollout.reasoning_mask[:, 1:]
    torch.testing.assert_close(grouped[mask], whole[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped_embeddings, whole_embeddings, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_the_export_equals_the_embedder_for_every_family(_family_embedders, texts, family, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from sr3_agent.serving.export import export_embedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = _family_embedders(family)
    model = SentenceTransformer(str(export_embedder(embedder, tmp_path / "st")), device="cpu")
    documents, queries = texts["documents"], texts["queries"]
    np.testing.assert_allclose(model.encode_document(documents, batch_size=5), embedder.encode_documents(documents),
                               atol=ATOL)
    np.testing.assert_allclose(model.encode_query(queries, batch_size=5), embedder.encode_queries(queries), atol=ATOL)


@pytest.mark.parametrize("family, window", [("llama", None), ("gemma3-sliding", 512)])
def test_prompts_of_1024_tokens_through_the_index_and_training(family, window):
    """BEIR-length passages: 1,024-token prompts (longer than Gemma-3-270m's 512-token window) give the
    plain path's vectors, rank in the lazy index, and train with the whole sequences' gradients."""
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.training.sft import training_embeddings
    from sr3_agent.model.tiny_models import tiny_model, tiny_tokenizer
    from sr3_env.index import LazyIndex

    tokenizer = tiny_tokenizer()
    embedder = ReasoningEmbedder(tiny_model(family, tokenizer, window=window, max_positions=2048), tokenizer,
                                 max_length=1024, batch_size=4)
    glosses = load_dataset("wordnet-revdict").documents
    texts = [" ".join(glosses[i * 400:(i + 1) * 400][:size]) for i, size in enumerate([400, 150, 90, 300, 5, 400])]
    lengths = [len(p) for p in embedder.prompt_ids(texts, embedder.prompts.document)]
    assert max(lengths) == 1024 and min(lengths) < 100
    vectors = embedder.encode_documents(texts)
    np.testing.assert_allclose(vectors, plain(embedder).encode_documents(texts), atol=ATOL)
    index = LazyIndex(texts, embedder)
    result = index.search(vectors[:2], [np.array([0]), np.array([1])], k=3)
    assert [r.tolist() for r in result.gold_ranks] == [[1], [1]]  # a document's own vector ranks it first
    sequences = [ids + [embedder.embed_token_id] for ids in embedder.prompt_ids(texts, embedder.prompts.document)]
    grads = []
    for whole in (True, False):
        embedder.model.zero_grad(set_to_none=True)
        out, _, _ = training_embeddings(embedder, sequences, [embedder.prompts.document] * len(texts), whole=whole)
        (out[:3] @ out[3:].T).sum().backward()
        grads.append({n: p.grad.clone() for n, p in embedder.model.named_parameters() if p.grad is not None})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-3, msg=f"gradient of {name}")
