"""Prefix reuse and cache reads give what the plain forward gives (tiny random-weight models, real texts).

The plain path (`ReasoningEmbedder.reuse_prefix = False`) computes every prompt whole and embeds a
reasoning with a second pass; the optimised one continues a shared prefix's key/value cache, computes
each RL prompt once for its G samples, and reads a reasoning's embedding from the generation's cache.

The equivalence tests run once per model family (`family_embedder`: Llama, Qwen2, Qwen3, Mistral,
Gemma 2 and 3, Phi-3, OLMo 2, Granite; the sliding-window ones with a window shorter than most test
prompts, where a layout with padding inside its rows must give way to the plain path).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sr3_agent.config import RLConfig
from sr3_agent.model.kvcache import attention_window, layout_is_exact
from sr3_agent.training.rl import policy_forward, reference_logprobs, rl_losses
from sr3_agent.training.parts import add_lora
from sr3_env import load_dataset
from conftest import favour_embed_token

ATOL = 1e-4  # the bound for fp32; the tiny model agrees to about 1e-6


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    data = load_dataset("wordnet-revdict")
    return [*data.documents[:10], *data.query_texts[:6]]


def varied_lengths(embedder, texts: list[str]) -> list[str]:
    """Real texts plus a one-token text and one cut to `max_length` (the longest a prompt can be)."""
    return ["x", *texts, " ".join(texts) * 4]


def fits_window(embedder, span: int) -> bool:
    """Whether a layout of ``span`` slots with padding inside fits the model's attention window."""
    return layout_is_exact(attention_window(embedder.model.config), span, padded_inside=True)


def plain(embedder):
    twin = copy.copy(embedder)
    twin.reuse_prefix = False
    return twin


def one_by_one(embedder, texts, instruction, right_padded: bool = False, suffix: list[int] = ()) -> np.ndarray:
    """Each text's prompt (then ``suffix``: the latent way's think tokens) alone through the plain forward,
    laid out left- or right-padded in a batch."""
    rows = [ids + list(suffix) + [embedder.embed_token_id] for ids in embedder.prompt_ids(texts, instruction)]
    ids, mask = embedder.pad_left(rows)
    if right_padded:
        ids, mask = ids.clone(), mask.clone()
        for row, seq in enumerate(rows):
            ids[row] = embedder.pad_token_id
            mask[row] = 0
            ids[row, :len(seq)] = torch.as_tensor(seq)
            mask[row, :len(seq)] = 1
    with torch.no_grad():
        return embedder.embed(ids, mask).numpy()


def add_trained_think_tokens(embedder, count: int = 3) -> list[int]:
    """Give ``embedder`` ``count`` think tokens whose rows differ (as training makes them); their ids."""
    embedder.add_latent_tokens(count)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rows = embedder.model.get_input_embeddings().weight
        rows[embedder.latent_token_ids] += 0.05 * torch.randn(count, rows.shape[1], generator=generator)
    embedder.bump_version()
    return embedder.latent_suffix()


def encoder_of(embedder, kind: str):
    """The encode call of ``kind``: documents, direct queries, or the latent way's queries."""
    return {"document": embedder.encode_documents, "query": embedder.encode_queries,
            "latent": lambda texts: embedder.encode_queries(texts, latent=True)}[kind]


@pytest.mark.parametrize("kind", ["document", "query", "latent"])
def test_prefix_reuse_equals_the_plain_forward(family_embedder, real_texts, kind):
    texts = varied_lengths(family_embedder, real_texts)
    instruction = family_embedder.prompts.document if kind == "document" else family_embedder.prompts.query
    suffix = add_trained_think_tokens(family_embedder) if kind == "latent" else []  # part of each text's rest
    lengths = [len(p) for p in family_embedder.prompt_ids(texts, instruction)]
    assert min(lengths) - len(family_embedder.prefix_ids(instruction)) <= 8 and max(lengths) == family_embedder.max_length
    family_embedder.batch_size = 5  # batches that mix lengths
    fast = encoder_of(family_embedder, kind)(texts)
    if fits_window(family_embedder, family_embedder.max_length + len(suffix) + 1):
        assert family_embedder.window_fallbacks == 0  # every batch took the shared-prefix path
    np.testing.assert_allclose(fast, one_by_one(family_embedder, texts, instruction, suffix=suffix), atol=ATOL)
    np.testing.assert_allclose(fast, one_by_one(family_embedder, texts, instruction, right_padded=True, suffix=suffix),
                               atol=ATOL)
    np.testing.assert_allclose(fast, encoder_of(plain(family_embedder), kind)(texts), atol=ATOL)


def test_the_prefix_is_the_markup_before_the_text(tiny_embedder):
    instruction = tiny_embedder.prompts.document
    prefix = tiny_embedder.prefix_ids(instruction)
    text = tiny_embedder.tokenizer.decode(prefix)
    assert instruction in text and text.endswith("user\n")
    assert all(p[:len(prefix)] == prefix for p in tiny_embedder.prompt_ids(["dog", "a long text"], instruction))


def test_a_text_whose_tokens_merge_with_the_markup_takes_the_plain_path(tiny_embedder):
    texts = ["\n\nstarts with blank lines", "plain text"]
    prefix = tiny_embedder.prefix_ids(tiny_embedder.prompts.document)
    assert tiny_embedder.prompt_ids(texts[:1], tiny_embedder.prompts.document)[0][:len(prefix)] != prefix
    np.testing.assert_allclose(tiny_embedder.encode_documents(texts),
                               one_by_one(tiny_embedder, texts, tiny_embedder.prompts.document), atol=ATOL)


def test_the_prefix_is_recomputed_when_the_version_changes(tiny_embedder, real_texts):
    texts = real_texts[:4]
    before = tiny_embedder.encode_documents(texts)
    with torch.no_grad():
        for parameter in tiny_embedder.model.parameters():
            parameter.mul_(1.1)
    stale = tiny_embedder.encode_documents(texts)  # weights changed behind the embedder's back: cache not renewed
    tiny_embedder.bump_version()
    fresh = tiny_embedder.encode_documents(texts)
    expected = one_by_one(tiny_embedder, texts, tiny_embedder.prompts.document)
    np.testing.assert_allclose(fresh, expected, atol=ATOL)
    assert np.abs(stale - expected).max() > 1e-3 and np.abs(before - expected).max() > 1e-3


@pytest.mark.parametrize("temperature, samples", [(0.0, 1), (1.0, 3)])
def test_reasoning_embeddings_read_from_the_cache_equal_a_second_pass(family_embedder, real_texts, temperature, samples):
    torch.manual_seed(0)
    rollout = family_embedder.generate_reasoning(real_texts[10:14], max_new_tokens=7, temperature=temperature,
                                               num_samples=samples)
    assert rollout.num_samples == samples
    if rollout.embeddings is None:  # only a window shorter than the layout sends it down the plain path
        assert not fits_window(family_embedder, rollout.input_ids.shape[1])
        return
    with torch.no_grad():
        second_pass = family_embedder.embed(rollout.input_ids, rollout.attention_mask)
    torch.testing.assert_close(rollout.embeddings, second_pass, atol=ATOL, rtol=0)


def test_an_emitted_token_is_read_where_the_model_wrote_it(tiny_embedder, real_texts):
    """Make the model write the token early for some rows (a bias on its logit), so the cache holds
    tokens after it that the read must ignore."""
    favour_embed_token(tiny_embedder)
    torch.manual_seed(1)
    rollout = tiny_embedder.generate_reasoning(real_texts[10:16], max_new_tokens=10, temperature=1.0, num_samples=2,
                                               min_new_tokens=0)
    assert rollout.emitted.any() and (rollout.reasoning_lengths > rollout.reasoning_lengths.min()).any()
    with torch.no_grad():
        second_pass = tiny_embedder.embed(rollout.input_ids, rollout.attention_mask)
    torch.testing.assert_close(rollout.embeddings, second_pass, atol=ATOL, rtol=0)


def test_greedy_reasoning_is_the_same_with_and_without_prefix_reuse(family_embedder, real_texts):
    texts = real_texts[10:14]
    fast = family_embedder.generate_reasoning(texts, max_new_tokens=6)
    slow = plain(family_embedder).generate_reasoning(texts, max_new_tokens=6)
    assert slow.embeddings is None
    assert torch.equal(fast.input_ids, slow.input_ids) and torch.equal(fast.reasoning_mask, slow.reasoning_mask)
    np.testing.assert_allclose(family_embedder.encode_queries(texts, reasoning=True, max_new_tokens=6),
                               plain(family_embedder).encode_queries(texts, reasoning=True, max_new_tokens=6), atol=ATOL)


def rl_step_losses(policy, rollout, grouped: bool):
    """The RL update's losses on a fixed rollout (advantages and auxiliary targets made up, fixed)."""
    config = RLConfig(aux_weight=0.5, kl_weight=0.1)
    generator = torch.Generator().manual_seed(0)
    N, D = rollout.input_ids.shape[0], policy.dim
    advantages = torch.randn(N, generator=generator)
    positives = torch.nn.functional.normalize(torch.randn(N, D, generator=generator), dim=-1)
    negatives = torch.nn.functional.normalize(torch.randn(3, D, generator=generator), dim=-1)
    reference = copy.deepcopy(policy)
    reference.model.requires_grad_(False)
    ref = reference_logprobs(policy, reference, rollout)
    logprobs, embeddings = policy_forward(policy, rollout, grouped=grouped)
    emitted = torch.arange(N) % 2 == 0  # made up too: the token loss reads the last column of either layout
    losses = rl_losses(logprobs, ref, advantages, rollout.reasoning_mask[:, 1:], emitted, embeddings, positives,
                       negatives, torch.zeros(N, N + 3, dtype=torch.bool), config)
    return losses, embeddings


def test_the_grouped_rl_forward_gives_the_plain_losses_and_gradients(family_embedder, real_texts):
    torch.manual_seed(0)
    rollout = family_embedder.generate_reasoning(real_texts[10:13], max_new_tokens=6, temperature=1.0, num_samples=3)
    results = {}
    for grouped in (False, True):
        family_embedder.model.zero_grad(set_to_none=True)
        losses, embeddings = rl_step_losses(family_embedder, rollout, grouped)
        sum(losses.values()).backward()
        results[grouped] = (losses, embeddings, {n: p.grad.clone() for n, p in family_embedder.model.named_parameters()})
    (plain_losses, plain_embeddings, plain_grads), (losses, embeddings, grads) = results[False], results[True]
    for name in plain_losses:
        torch.testing.assert_close(losses[name], plain_losses[name], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(embeddings, plain_embeddings, atol=1e-5, rtol=0)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-3, msg=f"gradient of {name}")
    assert any(g.abs().max() > 0 for g in grads.values())


def test_grouped_log_probs_fill_the_reasoning_columns(family_embedder, real_texts):
    torch.manual_seed(0)
    rollout = family_embedder.generate_reasoning(real_texts[10:12], max_new_tokens=5, temperature=1.0, num_samples=2)
    with torch.no_grad():
        full, _ = policy_forward(family_embedder, rollout, grouped=False)
        grouped, _ = policy_forward(family_embedder, rollout, grouped=True)
        if family_embedder.grouped_hidden_states(rollout) is None:  # a window shorter than the layout: the plain path
            assert not fits_window(family_embedder, rollout.input_ids.shape[1])
            torch.testing.assert_close(grouped, full, atol=0, rtol=0)
            return
    mask = rollout.reasoning_mask[:, 1:]
    torch.testing.assert_close(grouped[mask], full[mask], atol=1e-5, rtol=0)
    assert (grouped[~rollout.attention_mask[:, 1:].bool()] == 0).all()


def test_with_lora_the_reference_is_the_policy_with_adapters_disabled(family_embedder, real_texts):
    torch.manual_seed(0)
    frozen = copy.deepcopy(family_embedder)
    family_embedder.model = add_lora(family_embedder.model, RLConfig(lora=True, lora_rank=4))
    with torch.no_grad():  # move the adapters away from zero, as training would
        for name, parameter in family_embedder.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    rollout = family_embedder.generate_reasoning(real_texts[10:12], max_new_tokens=5, temperature=1.0, num_samples=2)
    mask = rollout.reasoning_mask[:, 1:]
    without_copy = reference_logprobs(family_embedder, None, rollout)
    with_copy = reference_logprobs(family_embedder, frozen, rollout)
    torch.testing.assert_close(without_copy[mask], with_copy[mask], atol=1e-5, rtol=0)
    policy_now, _ = policy_forward(family_embedder, rollout)
    assert (policy_now.detach()[mask] - with_copy[mask]).abs().max() > 1e-3  # the adapters do change the policy


def test_length_batches_keep_every_row_once_and_bound_the_padding():
    from sr3_agent.model.embedder import length_batches

    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(3, 40, size=300)] + [120]  # one outlier
    batches = length_batches(lengths, size=32, max_padding=0.2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert max(len(b) for b in batches) <= 32
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * width * 0.8 <= sum(lengths[i] for i in batch)
    assert [len(b) for b in batches if 120 in [lengths[i] for i in b]] == [1]  # the outlier pads nobody


@pytest.mark.parametrize("latent", [False, True], ids=["direct", "latent"])
def test_sft_embeddings_after_the_prefix_give_the_whole_sequences_losses_and_gradients(family_embedder, real_texts, latent):
    from sr3_agent.training.sft import query_sequences, training_embeddings

    torch.manual_seed(0)
    texts = real_texts[10:16]
    reasonings = [[101, 102], None, [7, 8, 9, 10], None, None, [55]]  # two instructions in one batch
    think = add_trained_think_tokens(family_embedder) if latent else None  # in the direct rows
    sequences, instructions = query_sequences(family_embedder, texts, reasonings, think)
    labelled = [3, 1, 5, 1, 1, 2]  # kept reasonings labelled too
    documents = [ids + [family_embedder.embed_token_id]
                 for ids in family_embedder.prompt_ids(real_texts[:6], family_embedder.prompts.document)]
    results = {}
    for whole in (True, False):
        family_embedder.model.zero_grad(set_to_none=True)
        queries, q_lm, q_whole = training_embeddings(family_embedder, sequences, instructions, whole=whole,
                                                     labelled=labelled)
        docs, d_lm, _ = training_embeddings(family_embedder, documents, [family_embedder.prompts.document] * 6, whole=whole)
        assert (q_whole is None) != whole or not fits_window(family_embedder, max(len(q) for q in sequences))
        loss = (queries * docs).sum() + q_lm + d_lm
        loss.backward()
        results[whole] = (queries.detach(), q_lm.detach(), d_lm.detach(),
                          {n: p.grad.clone() for n, p in family_embedder.model.named_parameters()})
    for a, b in zip(results[True][:3], results[False][:3]):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    for name, grad in results[True][3].items():
        torch.testing.assert_close(results[False][3][name], grad, atol=1e-5, rtol=1e-3, msg=f"gradient of {name}")


def test_next_token_scores_are_the_causal_lms_own(family_embedder, real_texts):
    """The decoding loop scores the next token from the decoder's last hidden state (`head_logits`); that must be what
    the causal LM's forward gives, its family's scaling included (Granite's logits_scaling set to a real model's)."""
    from sr3_agent.model.generation import head_logits

    config = family_embedder._causal_lm().config
    if hasattr(config, "logits_scaling"):
        config.logits_scaling = 8.0
    ids, mask = family_embedder.pad_left(family_embedder.prompt_ids(real_texts[:3], family_embedder.prompts.query))
    with torch.no_grad():
        expected = family_embedder._causal_lm()(input_ids=ids, attention_mask=mask).logits[:, -1].float()
        hidden = family_embedder._decoder()(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
        torch.testing.assert_close(head_logits(family_embedder, hidden), expected, atol=ATOL, rtol=0)


def test_rows_leave_the_batch_when_they_stop(tiny_embedder, real_texts):
    """Rows that wrote the token early leave the decoding batch, so later decoder steps run on fewer rows, and every
    row's embedding is still what a second pass over its sequence gives."""
    favour_embed_token(tiny_embedder)
    sizes = []
    hook = tiny_embedder._decoder().register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape), with_kwargs=True)
    torch.manual_seed(1)
    try:
        rollout = tiny_embedder.generate_reasoning(real_texts[10:14], max_new_tokens=10, temperature=1.0, num_samples=3,
                                                   min_new_tokens=0)
    finally:
        hook.remove()
    steps = [rows for rows, width in sizes if width == 1]  # the decoding steps, one token a row
    assert steps[0] == 12 and steps == sorted(steps, reverse=True) and steps[-1] < 12
    # a row is fed its last prompt token and each token it keeps, then the embed token (a stop token is not fed)
    fed = rollout.reasoning_lengths - rollout.emitted.long() + 2
    assert len(steps) == int(fed.max())
    with torch.no_grad():
        second_pass = tiny_embedder.embed(rollout.input_ids, rollout.attention_mask)
    torch.testing.assert_close(rollout.embeddings, second_pass, atol=ATOL, rtol=0)
