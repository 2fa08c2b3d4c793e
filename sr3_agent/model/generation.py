"""Reasoning generation: the model writes a short analysis of each query and stops at ``<|embed_token|>``.

`generate_reasoning` samples (or greedily decodes) up to ``max_new_tokens`` tokens per text, stopping
at the token or at the model's own turn end (if the model never writes the token it is appended and
the miss is counted), and returns a `Rollout`: the whole sequences, left-padded, with a mask of the
tokens the model wrote. With prefix reuse, each prompt is computed once for its samples after the
shared prefix, and the embeddings are read from the generation's cache (`generate_after_prefix`): with the dynamic
cache by `decode_leaving`, in which a row leaves the batch as soon as it stops (``generate`` runs every row until
the longest is done, so one long reasoning sets the cost of its whole batch).
On CUDA the tokens are generated through a static key/value cache with compiled decoding
(`sr3_agent.model.static_cache`, `ReasoningEmbedder.generation_cache`) by ``generate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import (LogitsProcessor, LogitsProcessorList, MinNewTokensLengthLogitsProcessor, TemperatureLogitsWarper,
                          TopPLogitsWarper)

from sr3_agent.model.kvcache import (cache_argument, continue_forward, expanded_cache, key_values, pad_rests,
                                     positions_after, repeat_rows, returned_cache)
from sr3_agent.model.prefix_reuse import split_prefix
from sr3_agent.model.static_cache import static_cache, uses_static_cache
from sr3_env.errors import Sr3Error

Embedder = Any  #: a `sr3_agent.model.embedder.ReasoningEmbedder` (not imported here: it imports this module)


class GenerationError(Sr3Error, FloatingPointError):
    """The model's next-token scores hold NaN or +inf, so no token can be chosen (see `FiniteScores`)."""


class FiniteScores(LogitsProcessor):
    """Stops a generation with `GenerationError` when a next-token score is NaN or +inf (-inf is a token
    another processor ruled out). Without it sampling fails deep in torch, on a GPU as a device-side
    assert that names nothing."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if bool((torch.isnan(scores) | torch.isposinf(scores)).any()):
            raise GenerationError(
                f"The model's next-token scores are NaN or infinite after {input_ids.shape[1]} tokens: its weights hold "
                "NaN/inf or its forward overflowed. Check the model (a diverged checkpoint? sr3's training refuses "
                "such steps) or run in fp32 (--precision fp32).")
        return scores


@dataclass
class Rollout:
    """Sequences that end with the embed token, padded on the left.

    ``reasoning_mask`` marks the tokens the model generated (the reasoning, plus the embed token
    when the model emitted it itself); an appended token is not the model's choice and is not marked.
    """

    input_ids: torch.Tensor  # (B, T) int64, left-padded
    attention_mask: torch.Tensor  # (B, T) int64
    reasoning_mask: torch.Tensor  # (B, T) bool
    emitted: torch.Tensor  # (B,) bool: the model wrote the embed token itself
    reasoning: list[str]  # (B,) the decoded reasoning texts
    #: (B, D) L2-normalised embeddings read from the generation's cache (no gradients), or None when
    #: the rollout was generated without prefix reuse (then `ReasoningEmbedder.embed` gives them)
    embeddings: torch.Tensor | None = None
    num_samples: int = 1  #: consecutive rows that share one prompt
    prompt_lengths: torch.Tensor | None = None  #: (B,) int64 prompt tokens of each row (before its reasoning)

    @property
    def reasoning_lengths(self) -> torch.Tensor:
        return self.reasoning_mask.sum(dim=1)


@torch.no_grad()
def generate_reasoning(embedder: Embedder, texts: Sequence[str], *, max_new_tokens: int = 64, temperature: float = 0.0,
                       top_p: float = 1.0, num_samples: int = 1, min_new_tokens: int | None = None) -> Rollout:
    """`ReasoningEmbedder.generate_reasoning`: checks the settings, generates (after the shared prefix where it
    applies, else over whole prompts), then builds the `Rollout` and counts the reasonings on the embedder."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    if min_new_tokens is None:
        min_new_tokens = min(embedder.min_reasoning_tokens, max_new_tokens)
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(f"min_new_tokens must be in [0, max_new_tokens={max_new_tokens}], got {min_new_tokens}.")
    unique = embedder.prompt_ids(texts, embedder.prompts.reasoning)
    prompts = [p for p in unique for _ in range(num_samples)]
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    sampling.update(max_new_tokens=max_new_tokens, eos_token_id=embedder.stop_token_ids, pad_token_id=embedder.pad_token_id,
                    top_k=None, min_new_tokens=min_new_tokens, logits_processor=LogitsProcessorList([FiniteScores()]))
    static = uses_static_cache(embedder)
    with eval_mode(embedder.model):
        # the layout grows by the generated tokens and the embed token read after them
        split = split_prefix(embedder, unique, embedder.prompts.reasoning, appended=max_new_tokens + 1)
        if split is None:
            ids, mask = embedder.pad_left(prompts)
            cache = {}  # the dynamic one, made by generate
            if static:
                cache = {cache_argument(embedder._causal_lm()): static_cache(embedder, ids.shape[1] + max_new_tokens)}
            with embedder._autocast(ids.device):
                generated = embedder.model.generate(input_ids=ids, attention_mask=mask, **cache, **sampling)
            generated = generated[:, ids.shape[1]:]
            read_embeddings = None
        else:
            generated, read_embeddings = generate_after_prefix(embedder, *split, num_samples, sampling, static=static)
    rollout = rollout_of(embedder, prompts, generated.cpu().tolist(), num_samples)
    counts = rollout.reasoning_lengths.cpu() - rollout.emitted.long()  # tokens written before the token
    embedder.reasoning_rollouts += len(prompts)
    embedder.missing_embed_token += len(prompts) - int(rollout.emitted.sum())
    embedder.reasoning_tokens_written += int(counts.sum())
    if read_embeddings is not None:
        rollout.embeddings = read_embeddings(counts)
    return rollout


def rollout_of(embedder: Embedder, prompts: Sequence[Sequence[int]], written: Sequence[Sequence[int]],
               num_samples: int) -> Rollout:
    """The `Rollout` of each prompt continued by the tokens the model ``written`` (up to its cap), cut at
    the first stop token: prompt + reasoning + ``<|embed_token|>``, the token marked as the model's
    only where it wrote it itself (else it is appended)."""
    sequences, counts, emitted, reasoning = [], [], [], []
    for prompt, new in zip(prompts, written):
        stop = next((i for i, t in enumerate(new) if t in embedder.stop_token_ids), len(new))
        wrote_token = stop < len(new) and new[stop] == embedder.embed_token_id
        text_ids = list(new[:stop])
        sequences.append(list(prompt) + text_ids + [embedder.embed_token_id])
        counts.append(len(text_ids))
        emitted.append(wrote_token)
        reasoning.append(embedder.tokenizer.decode(text_ids, skip_special_tokens=True))
    input_ids, attention_mask = embedder.pad_left(sequences)
    width = input_ids.shape[1]
    reasoning_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, count in enumerate(counts):
        count += int(emitted[row])  # the token is the model's doing only when it wrote it
        end = width - (0 if emitted[row] else 1)
        reasoning_mask[row, end - count:end] = True
    return Rollout(input_ids=input_ids, attention_mask=attention_mask, reasoning_mask=reasoning_mask,
                   emitted=torch.as_tensor(emitted), reasoning=reasoning, num_samples=num_samples,
                   prompt_lengths=torch.as_tensor([len(p) for p in prompts]))


# -- auto: the model decides whether to reason ------------------------------------------------------

def direct_choices(rollout: Rollout) -> torch.Tensor:
    """(N,) bool: the rows in which the model wrote ``<|embed_token|>`` at once, choosing not to reason
    (the `auto` way then uses the query's direct embedding)."""
    return rollout.emitted.bool().cpu() & (rollout.reasoning_lengths.cpu() == 1)


def with_direct_option(embedder: Embedder, rollout: Rollout) -> Rollout:
    """``rollout`` with the last of each query's samples replaced by the choice not to reason: its prompt
    and then ``<|embed_token|>``, written at once and marked as the model's choice. RL's ``auto``
    training keeps the direct path among each group's options this way (`sr3_agent.training.rl`)."""
    if rollout.prompt_lengths is None:
        raise ValueError("with_direct_option needs the rollout's prompt lengths (build it with generate_reasoning).")
    G = rollout.num_samples
    rows = [seq[mask.bool()].tolist() for seq, mask in zip(rollout.input_ids.cpu(), rollout.attention_mask.cpu())]
    lengths = rollout.prompt_lengths.tolist()
    prompts = [row[:length] for row, length in zip(rows, lengths)]
    written = [row[length:] if emitted else row[length:-1]  # the token, where the model did not write it, was appended
               for row, length, emitted in zip(rows, lengths, rollout.emitted.tolist())]
    for last in range(G - 1, len(rows), G):
        written[last] = [embedder.embed_token_id]
    return rollout_of(embedder, prompts, written, G)


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode inside the block, as it was after. Generation and the cache-read step
    after it are inference; in training mode under activation checkpointing some transformers
    versions (5.17) drop the cache they continue, which fails or gives wrong vectors."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def generate_after_prefix(embedder: Embedder, prefix_ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]],
                          rests: list[list[int]], num_samples: int, sampling: dict[str, Any], *,
                          static: bool = False) -> tuple[torch.Tensor, Any]:
    """Generate after the cached prefix, each prompt's rest computed once for its ``num_samples``.

    Returns the (N, n) generated tokens and a function of each row's reasoning length (tokens before the stop) that
    gives the (N, D) embeddings. With the dynamic cache `decode_leaving` writes and reads them, each row leaving the
    batch when it stops. With ``static`` (a static cache with room for the generation and the read: `static_cache`),
    ``generate`` writes them and one decoder step over [last generated token, embed token] continues its cache (the
    last token is the only one ``generate`` did not feed back), the tokens after each row's reasoning masked out."""
    P = len(prefix_ids)
    decoder, config = embedder._decoder(), embedder._decoder().config
    ids, mask = (t.to(embedder.device) for t in pad_rests(rests, embedder.pad_token_id))  # (B, S)
    cache = expanded_cache(layers, len(rests), config)
    full_mask = torch.cat([mask.new_ones(len(rests), P), mask], dim=1)  # (B, P + S)
    if ids.shape[1] > 1:  # every prompt token but the last (generate needs one to start from)
        with embedder._autocast(embedder.device):
            _, cache = continue_forward(decoder, ids[:, :-1], full_mask[:, :-1],
                                        positions_after(P, mask)[:, :-1], cache)
    full_ids = torch.cat([torch.tensor([prefix_ids], device=embedder.device).expand(len(rests), -1), ids], dim=1)
    full_ids, full_mask = full_ids.repeat_interleave(num_samples, 0), full_mask.repeat_interleave(num_samples, 0)
    if not static:  # the rows that stopped leave the batch: the longest reasoning no longer sets everyone's cost
        generated, embeddings = decode_leaving(embedder, repeat_rows(key_values(cache), num_samples, config), full_ids,
                                               full_mask, sampling)

        def read_embeddings(lengths: torch.Tensor) -> torch.Tensor:
            return embeddings

        return generated, read_embeddings
    # room for the prompt, the generated tokens and the embed token read after them
    cache = static_cache(embedder, P + ids.shape[1] + sampling["max_new_tokens"] + 1, key_values(cache), num_samples)
    with embedder._autocast(embedder.device):
        output = embedder.model.generate(input_ids=full_ids, attention_mask=full_mask, return_dict_in_generate=True,
                                         **{cache_argument(embedder._causal_lm()): cache}, **sampling)
    generated, cache = output.sequences[:, full_ids.shape[1]:], returned_cache(output)
    n = generated.shape[1]
    if int(cache.get_seq_length()) != full_ids.shape[1] + n - 1:
        raise RuntimeError(f"generate returned a cache of {cache.get_seq_length()} tokens for {full_ids.shape[1]} "
                           f"prompt and {n} generated tokens; expected {full_ids.shape[1] + n - 1}.")

    def read_embeddings(lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(embedder.device).view(-1, 1)  # (N, 1) reasoning tokens kept per row
        kept = torch.arange(n, device=embedder.device).view(1, -1) < lengths  # (N, n)
        step_mask = torch.cat([full_mask, kept.long(), full_mask.new_ones(len(kept), 1)], dim=1)
        inputs = torch.stack([generated[:, -1], torch.full_like(generated[:, -1], embedder.embed_token_id)], dim=1)
        prompt_lengths = full_mask.sum(dim=1, keepdim=True)
        positions = torch.cat([prompt_lengths + n - 1, prompt_lengths + lengths], dim=1)
        with torch.no_grad(), eval_mode(embedder.model), embedder._autocast(embedder.device):
            hidden, _ = continue_forward(decoder, inputs, step_mask, positions, cache)
        return torch.nn.functional.normalize(hidden[:, -1].float(), dim=-1)

    return generated, read_embeddings


def token_choosers(sampling: dict[str, Any], prompt_width: int, stop_ids: Sequence[int]) -> LogitsProcessorList:
    """The score processors ``generate`` applies with ``sampling``, in its order: the stop tokens held back before
    ``min_new_tokens`` written tokens (after prompts ``prompt_width`` wide), NaN/+inf refused (`FiniteScores`), then
    the temperature and the ``top_p`` nucleus where it samples."""
    processors = LogitsProcessorList([MinNewTokensLengthLogitsProcessor(prompt_width, sampling.get("min_new_tokens", 0),
                                                                         list(stop_ids)), FiniteScores()])
    if sampling.get("do_sample"):
        processors.append(TemperatureLogitsWarper(sampling["temperature"]))
        if sampling.get("top_p", 1.0) < 1.0:
            processors.append(TopPLogitsWarper(sampling["top_p"]))
    return processors


def head_logits(embedder: Embedder, hidden: torch.Tensor) -> torch.Tensor:
    """(B, V) next-token scores from (B, H) final hidden states, as the causal LM's own forward computes them: its
    output head, then the scaling its family applies (Granite's ``logits_scaling``, Cohere's ``logit_scale``,
    Gemma 2's ``final_logit_softcapping``)."""
    causal_lm = embedder._causal_lm()
    config = causal_lm.config
    with embedder._autocast(hidden.device):
        logits = causal_lm.get_output_embeddings()(hidden).float()
    if getattr(config, "logits_scaling", None):
        logits = logits / config.logits_scaling
    if getattr(config, "logit_scale", None):
        logits = logits * config.logit_scale
    if getattr(config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / config.final_logit_softcapping) * config.final_logit_softcapping
    return logits


def decode_leaving(embedder: Embedder, cache: Any, ids: torch.Tensor, mask: torch.Tensor, sampling: dict[str, Any]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Write each row's reasoning after its prompt (``ids``, (N, T) with ``mask``; ``cache`` holds all of them but the
    last token) and read its embedding, one decoder step a token, each row leaving the batch once it is done.

    A row stops at a stop token (not fed back) or after ``max_new_tokens`` tokens; the step after that feeds
    ``<|embed_token|>`` at the position that follows its reasoning, whose hidden state is the row's embedding (as
    the static path's ``read_embeddings`` reads it after ``generate``), and the row leaves the batch and the cache.
    ``generate`` instead runs every row until the longest is done. Returns the (N, n) written tokens (each row's stop
    token, then padding, where it stopped) and the (N, D) L2-normalised embeddings."""
    decoder = embedder._decoder()
    limit, stops = sampling["max_new_tokens"], torch.tensor(list(embedder.stop_token_ids), device=ids.device)
    N, device = len(ids), ids.device
    written = torch.full((N, limit), sampling["pad_token_id"], dtype=torch.long, device=device)
    embeddings: torch.Tensor | None = None
    rows = torch.arange(N, device=device)  # the rows still in the batch
    feed, closing = ids[:, -1], torch.zeros(N, dtype=torch.bool, device=device)  # closing: fed the embed token
    choosers, sample = token_choosers(sampling, ids.shape[1], embedder.stop_token_ids), bool(sampling.get("do_sample"))
    positions = mask.sum(dim=1) - 1  # the position of each row's fed token
    for step in range(limit + 2):  # the last step reads the embed token of the rows that wrote all their tokens
        with embedder._autocast(device):
            hidden, cache = continue_forward(decoder, feed.view(-1, 1), mask, positions.view(-1, 1), cache)
        hidden = hidden[:, -1]
        if embeddings is None:
            embeddings = torch.zeros(N, hidden.shape[-1], dtype=torch.float32, device=device)
        if closing.any():  # their state at the embed token is their embedding; they leave the batch
            embeddings[rows[closing]] = torch.nn.functional.normalize(hidden[closing].float(), dim=-1)
            stay = ~closing
            rows, hidden, mask, positions = rows[stay], hidden[stay], mask[stay], positions[stay]
            cache.batch_select_indices(stay.nonzero().squeeze(1))
        if not len(rows):
            break
        feed = torch.full_like(rows, embedder.embed_token_id)  # the rows that wrote all their tokens close now
        closing = torch.full_like(rows, step == limit, dtype=torch.bool)
        if step < limit:
            scores = choosers(torch.cat([ids[rows], written[rows, :step]], dim=1), head_logits(embedder, hidden))
            chosen = torch.multinomial(scores.softmax(dim=-1), 1).squeeze(1) if sample else scores.argmax(dim=-1)
            written[rows, step] = chosen
            closing = torch.isin(chosen, stops)  # a stop token is not fed: the embed token takes its place
            feed = torch.where(closing, feed, chosen)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        positions = positions + 1
    stopped = torch.isin(written, stops)
    lengths = torch.where(stopped.any(dim=1), stopped.int().argmax(dim=1) + 1, limit)  # written, stop included
    return written[:, :int(lengths.max())], embeddings
