"""ReasoningEmbedder on a tiny random-weight model: positions, padding, batching, saving, reasoning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr3_agent.model.embedder import EMBED_TOKEN, ReasoningEmbedder
from sr3_env.encoders import Encoder
from sr3_env.errors import EncoderError

TEXTS = ["a cat", "the dog that chased the postman down the long road", "rain", "stock market crash of 1929"]


def test_implements_the_encoder_protocol(tiny_embedder):
    assert isinstance(tiny_embedder, Encoder)
    vectors = tiny_embedder.encode_documents(TEXTS)
    assert vectors.shape == (4, tiny_embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_token_position_under_left_padding(tiny_embedder):
    ids, mask = tiny_embedder.direct_batch(TEXTS, tiny_embedder.prompts.query)
    assert tiny_embedder.tokenizer.convert_ids_to_tokens(int(ids[0, -1])) == EMBED_TOKEN
    lengths = mask.sum(dim=1)
    assert int(lengths.min()) < int(lengths.max())  # the batch really is padded
    assert (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all()  # padding is on the left
    positions = tiny_embedder.embed_positions(ids, mask)
    assert positions.tolist() == [ids.shape[1] - 1] * len(TEXTS)
    # a right-padded row finds its token too, in the middle of the row
    right = torch.tensor([[5, 6, tiny_embedder.embed_token_id, 0, 0]])
    assert tiny_embedder.embed_positions(right, torch.tensor([[1, 1, 1, 0, 0]])).tolist() == [2]


def test_hidden_state_is_taken_at_the_token(tiny_embedder):
    ids, mask = tiny_embedder.direct_batch(TEXTS[:2], tiny_embedder.prompts.document)
    with torch.no_grad():
        hidden = tiny_embedder.hidden_states(ids, mask)
        expected = torch.nn.functional.normalize(hidden[:, -1], dim=-1)
        np.testing.assert_allclose(tiny_embedder.embed(ids, mask).numpy(), expected.numpy(), atol=1e-6)


def test_a_sequence_without_the_token_is_refused(tiny_embedder):
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(EncoderError, match="embed_token"):
        tiny_embedder.embed(ids, torch.ones_like(ids))


def test_batch_and_single_give_the_same_embedding(tiny_embedder):
    tiny_embedder.batch_size = 4
    batched = tiny_embedder.encode_queries(TEXTS)
    single = np.concatenate([tiny_embedder.encode_queries([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=2e-5)


def test_queries_and_documents_use_different_prompts(tiny_embedder):
    assert not np.allclose(tiny_embedder.encode_queries(TEXTS[:1]), tiny_embedder.encode_documents(TEXTS[:1]))


def test_long_texts_are_truncated_inside_the_template(tiny_embedder):
    ids = tiny_embedder.prompt_ids(["word " * 500], tiny_embedder.prompts.document)[0]
    assert len(ids) <= tiny_embedder.max_length
    assert tiny_embedder.tokenizer.decode(ids).rstrip().endswith("assistant")


def test_reasoning_appends_the_token_when_the_model_never_writes_it(tiny_embedder):
    rollout = tiny_embedder.generate_reasoning(TEXTS[:2], max_new_tokens=5, temperature=0.0)
    assert (rollout.input_ids[:, -1] == tiny_embedder.embed_token_id).all()
    assert not rollout.emitted.any()  # a random model does not pick the new token
    assert tiny_embedder.missing_embed_token_rate == 1.0
    assert rollout.reasoning_mask[:, -1].sum() == 0  # the appended token is not the model's doing
    assert (rollout.reasoning_lengths <= 5).all() and (rollout.reasoning_lengths >= 1).all()
    vectors = tiny_embedder.encode_queries(TEXTS[:2], reasoning=True, max_new_tokens=5)
    assert vectors.shape == (2, tiny_embedder.dim) and np.isfinite(vectors).all()


def test_reasoning_counters_count_from_their_last_reset(tiny_embedder):
    tiny_embedder.generate_reasoning(TEXTS[:3], max_new_tokens=4, temperature=0.0)
    tiny_embedder.reset_reasoning_counters()
    assert tiny_embedder.missing_embed_token_rate == 0.0 and tiny_embedder.mean_reasoning_length == 0.0
    rollout = tiny_embedder.generate_reasoning(TEXTS[:2], max_new_tokens=5, temperature=0.0)
    assert tiny_embedder.reasoning_rollouts == 2 and tiny_embedder.missing_embed_token_rate == 1.0
    assert tiny_embedder.mean_reasoning_length == pytest.approx(float(rollout.reasoning_lengths.float().mean()))


def test_reasoning_stops_at_the_token_when_the_model_writes_it(tiny_embedder):
    # make the new token overwhelmingly likely: its output row aligned with every hidden state's direction
    head = tiny_embedder.model.get_output_embeddings()
    with torch.no_grad():
        head.weight[tiny_embedder.embed_token_id] = 0
        tiny_embedder.model.lm_head.bias = None
    bias = torch.zeros(head.weight.shape[0])
    bias[tiny_embedder.embed_token_id] = 1e4
    head.bias = torch.nn.Parameter(bias)
    rollout = tiny_embedder.generate_reasoning(TEXTS[:3], max_new_tokens=8)
    assert rollout.emitted.all()
    # the least reasoning allowed (min_reasoning_tokens), then the token, written by the model
    assert rollout.reasoning_lengths.tolist() == [tiny_embedder.min_reasoning_tokens + 1] * 3
    assert rollout.reasoning_mask[:, -1].all()


def test_sampling_gives_several_reasonings_per_query(tiny_embedder):
    torch.manual_seed(0)
    rollout = tiny_embedder.generate_reasoning(TEXTS[:2], max_new_tokens=6, temperature=1.0, num_samples=3)
    assert rollout.input_ids.shape[0] == 6
    assert len(set(rollout.reasoning[:3])) > 1


def test_version_goes_up_with_every_optimiser_step(tiny_embedder):
    optimizer = torch.optim.SGD(tiny_embedder.model.parameters(), lr=0.1)
    tiny_embedder.attach_optimizer(optimizer)
    before = tiny_embedder.version
    ids, mask = tiny_embedder.direct_batch(TEXTS[:2], tiny_embedder.prompts.query)
    tiny_embedder.embed(ids, mask).sum().backward()
    optimizer.step()
    optimizer.step()
    assert tiny_embedder.version == before + 2


def test_save_and_load_round_trip(tiny_embedder, tmp_path):
    tiny_embedder.prompts.document = "Embed this passage."
    expected = tiny_embedder.encode_documents(TEXTS)
    tiny_embedder.save_pretrained(tmp_path / "saved")
    loaded = ReasoningEmbedder.from_pretrained(tmp_path / "saved", device="cpu")
    assert loaded.prompts.document == "Embed this passage."
    np.testing.assert_allclose(loaded.encode_documents(TEXTS), expected, atol=1e-6)

    from transformers import AutoModelForCausalLM, AutoTokenizer  # the folder is a plain HF model too

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert EMBED_TOKEN in tokenizer.get_vocab()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "saved").config.vocab_size == len(tokenizer)


def test_a_tokenizer_without_the_token_is_refused(tiny_embedder):
    from transformers import AutoTokenizer

    from sr3_agent.model.models import resolve_model

    with pytest.raises(EncoderError, match="from_pretrained"):
        ReasoningEmbedder(tiny_embedder.model, AutoTokenizer.from_pretrained(resolve_model()))


def test_the_new_token_starts_as_the_turn_end_token(tmp_path):
    """A base model without the token gets it as a scaled copy of <|im_end|>: where the model would end
    its turn, the token's logit is the larger one, so it writes the token instead."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sr3_agent.model.embedder import TURN_END_SCALE
    from sr3_agent.model.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    embedder = ReasoningEmbedder.from_pretrained(tmp_path / "base", device="cpu")
    rows = embedder.model.get_input_embeddings().weight
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    torch.testing.assert_close(rows[embedder.embed_token_id], rows[im_end] * TURN_END_SCALE)
    hidden = torch.randn(8, 32)
    logits = embedder.model.get_output_embeddings()(hidden)
    ends = logits[:, im_end] > 0
    assert torch.equal(logits[ends, embedder.embed_token_id] > logits[ends, im_end], torch.ones(int(ends.sum()), dtype=torch.bool))


def test_min_new_tokens_holds_the_token_back(tiny_embedder):
    """With min_new_tokens the model cannot stop (token or turn end) before writing that many tokens."""
    texts = ["a cat", "rain"]
    ids, mask = tiny_embedder.pad_left(tiny_embedder.prompt_ids(texts, tiny_embedder.prompts.reasoning))
    with torch.no_grad():  # point the (tied) token row along the prompts' last hidden states: greedy writes it first
        last = torch.nn.functional.normalize(tiny_embedder.hidden_states(ids, mask)[:, -1], dim=-1).mean(0)
        tiny_embedder.model.get_output_embeddings().weight[tiny_embedder.embed_token_id] = 100 * last
    free = tiny_embedder.generate_reasoning(texts, max_new_tokens=6, min_new_tokens=0)
    held = tiny_embedder.generate_reasoning(texts, max_new_tokens=6, min_new_tokens=3)
    assert free.reasoning_lengths.tolist() == [1, 1] and bool(free.emitted.all())  # the token alone
    assert all(n >= 3 for n in held.reasoning_lengths.tolist())
    with pytest.raises(ValueError, match="min_new_tokens"):
        tiny_embedder.generate_reasoning(["a cat"], max_new_tokens=2, min_new_tokens=3)


def test_min_reasoning_tokens_is_saved_and_is_the_default(tiny_embedder, tmp_path):
    tiny_embedder.min_reasoning_tokens = 2
    tiny_embedder.save_pretrained(tmp_path / "model")
    loaded = ReasoningEmbedder.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.min_reasoning_tokens == 2
    with pytest.raises(ValueError, match="min_reasoning_tokens"):
        ReasoningEmbedder(tiny_embedder.model, tiny_embedder.tokenizer, min_reasoning_tokens=-1)
