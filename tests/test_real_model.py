"""The bundled SmolLM2-135M-Instruct embedder (slow: loads the real model; `pytest -m slow`)."""

from __future__ import annotations

import numpy as np
import pytest

from sr3_agent import ReasoningEmbedder

pytestmark = pytest.mark.slow

TEXTS = ["a domesticated carnivorous mammal that barks", "a financial institution that accepts deposits",
         "dog", "the bank of a river"]


@pytest.fixture(scope="module")
def embedder():
    return ReasoningEmbedder.from_pretrained(device="cpu", batch_size=4)


def test_the_base_model_is_deterministic(embedder):
    again = ReasoningEmbedder.from_pretrained(device="cpu")
    assert again.fingerprint() == embedder.fingerprint()


def test_batch_and_single_agree(embedder):
    batched = embedder.encode_documents(TEXTS)
    single = np.concatenate([embedder.encode_documents([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_reasoning_is_text_and_ends_with_the_token(embedder):
    rollout = embedder.generate_reasoning(["dog"], max_new_tokens=16)
    assert rollout.reasoning[0].strip()
    assert int(rollout.input_ids[0, -1]) == embedder.embed_token_id


def test_save_load_round_trip(embedder, tmp_path):
    embedder.save_pretrained(tmp_path / "m")
    np.testing.assert_allclose(ReasoningEmbedder.from_pretrained(tmp_path / "m", device="cpu").encode_documents(TEXTS),
                               embedder.encode_documents(TEXTS), atol=1e-6)
