"""Prefix reuse: the shared prompt prefix of each instruction computed once per model version, and
every text continued from its key/value cache (the tensor plumbing is `sr3_agent.model.kvcache`).

The functions take the `ReasoningEmbedder` they serve and keep their state on it (``_prefix_ids``,
``_prefixes``, ``window_fallbacks``). Each returns None where the shared-prefix layout does not
apply (`ReasoningEmbedder.reuse_prefix` off, activation checkpointing in training mode, data-parallel
training, a layout longer than a sliding attention window): the caller then takes the plain path,
every prompt whole, which the fast path is tested against, architecture by architecture.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from sr3_agent.model.kvcache import (attention_window, common_prefix_length, continue_forward, expanded_cache, key_values,
                                     layout_is_exact, pad_rests, positions_after, repeat_rows, returned_cache)
from sr3_env.errors import EncoderError

Embedder = Any  #: a `sr3_agent.model.embedder.ReasoningEmbedder` (not imported here: it imports this module)


def prefix_ids(embedder: Embedder, instruction: str) -> list[int]:
    """`ReasoningEmbedder.prefix_ids`: found once per instruction by templating two texts that differ at once."""
    if instruction not in embedder._prefix_ids:
        probes = embedder.prompt_ids(["a", "b"], instruction)  # two texts that differ in their first token
        embedder._prefix_ids[instruction] = probes[0][:min(common_prefix_length(probes), len(probes[0]) - 1)]
    return embedder._prefix_ids[instruction]


def prefix(embedder: Embedder, instruction: str) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
    """`ReasoningEmbedder.prefix`: the keys and values cached on the embedder, keyed by what changes them."""
    key = (embedder.version, id(embedder.model), embedder.autocast_dtype, str(embedder.device))
    cached = embedder._prefixes.get(instruction)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    ids = prefix_ids(embedder, instruction)
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    if ids:
        with torch.no_grad(), embedder._autocast(embedder.device):
            output = embedder._decoder()(input_ids=torch.tensor([ids], device=embedder.device), use_cache=True)
        layers = key_values(returned_cache(output))
    embedder._prefixes[instruction] = (key, ids, layers)
    return ids, layers


def split_prefix(embedder: Embedder, prompts: Sequence[Sequence[int]], instruction: str, *, cached: bool = True,
                 appended: int = 0
                 ) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]] | None, list[list[int]]] | None:
    """(prefix ids, their cached keys/values or None when not ``cached``, each prompt's rest), or
    None when prefix reuse is off, a prompt does not start with the prefix (the first token of
    its text merged with the markup before it), or the layout, with ``appended`` more tokens
    after the rests, would not be exact under the model's attention window (`layout_is_exact`)."""
    if not embedder.reuse_prefix or checkpointing(embedder):
        return None
    ids = prefix_ids(embedder, instruction)
    if not ids or any(list(p[:len(ids)]) != ids or len(p) <= len(ids) for p in prompts):
        return None
    span = max(len(p) for p in prompts) + appended
    window = attention_window(embedder._decoder().config)
    if not layout_is_exact(window, span, padded_inside=appended > 0 or len({len(p) for p in prompts}) > 1):
        embedder.window_fallbacks += 1
        embedder._say_once("window", "%s attends over a window of %d tokens; prompts laid out over %d or more slots take "
                           "the plain path (each prompt whole: exact, slower) instead of the shared-prefix cache",
                           embedder.name, window, window)
        return None
    return ids, prefix(embedder, instruction)[1] if cached else None, [list(p[len(ids):]) for p in prompts]


def continue_prefix(embedder: Embedder, layers: list[tuple[torch.Tensor, torch.Tensor]], prefix_length: int,
                    rests: Sequence[Sequence[int]]) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Run the left-padded ``rests`` after the cached prefix: (B, S, H) hidden states of the rests,
    the grown cache, and the (B, P + S) attention mask of the whole layout."""
    ids, mask = (t.to(embedder.device) for t in pad_rests(rests, embedder.pad_token_id))
    full_mask = torch.cat([mask.new_ones(len(rests), prefix_length), mask], dim=1)
    cache = expanded_cache(layers, len(rests), embedder._decoder().config)
    with embedder._autocast(embedder.device):
        hidden, cache = continue_forward(embedder._decoder(), ids, full_mask, positions_after(prefix_length, mask), cache)
    return hidden, cache, full_mask


def checkpointing(embedder: Embedder) -> bool:
    """Whether a forward now may drop its cache: activation checkpointing in training mode. Transformers
    then runs the layers without their cache (5.25 only with gradients on; 5.17 also under no_grad, as
    when the index re-encodes documents in the middle of an SFT step), so a layout that continues
    a cache would fail or be wrong."""
    return (embedder.model.training
            and any(getattr(module, "gradient_checkpointing", False) for module in embedder._decoder().modules()))


def prefix_with_gradients(embedder: Embedder, prefix_ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The prefix's per-layer keys and values computed now, in the autograd graph."""
    with embedder._autocast(embedder.device):
        output = embedder._decoder()(input_ids=torch.tensor([prefix_ids], device=embedder.device), use_cache=True)
    return key_values(returned_cache(output))


def hidden_states_after_prefix(embedder: Embedder, sequences: Sequence[Sequence[int]], instruction: str
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """`ReasoningEmbedder.hidden_states_after_prefix`: the prefix from the cache without gradients, recomputed in
    the graph with them."""
    training = torch.is_grad_enabled()
    if training and (embedder.parallel_forward is not None or checkpointing(embedder)):  # DDP must see the whole forward
        return None
    split = split_prefix(embedder, sequences, instruction, cached=not training)
    if split is None:
        return None
    prefix_ids, layers, rests = split
    if layers is None:
        layers = prefix_with_gradients(embedder, prefix_ids)
    hidden, _, _ = continue_prefix(embedder, layers, len(prefix_ids), rests)
    ids, mask = (t.to(embedder.device) for t in pad_rests(rests, embedder.pad_token_id))
    return (hidden.float() if embedder.autocast_dtype is not None else hidden), ids, mask


def grouped_hidden_states(embedder: Embedder, rollout: Any
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """`ReasoningEmbedder.grouped_hidden_states`; ``rollout`` is a `sr3_agent.model.generation.Rollout`."""
    G = rollout.num_samples
    if (rollout.prompt_lengths is None or embedder.parallel_forward is not None or rollout.input_ids.shape[0] % G
            or checkpointing(embedder)):
        return None
    rows = [seq[mask.bool()].tolist() for seq, mask in zip(rollout.input_ids.cpu(), rollout.attention_mask.cpu())]
    lengths = rollout.prompt_lengths.tolist()
    prompts = [rows[i][:lengths[i]] for i in range(0, len(rows), G)]
    continuations = [row[length:] for row, length in zip(rows, lengths)]
    if any(rows[i][:lengths[i]] != prompts[i // G] for i in range(len(rows))):
        raise EncoderError("grouped_hidden_states: the rollout's consecutive samples do not share their prompt; "
                           "build it with generate_reasoning(num_samples=G).")
    split = split_prefix(embedder, prompts, embedder.prompts.reasoning, cached=False,  # computed here, with gradients
                         appended=max(len(c) for c in continuations))
    if split is None:
        return None
    prefix_ids, _, rests = split
    decoder, config = embedder._decoder(), embedder._decoder().config
    with embedder._autocast(embedder.device):
        layers = prefix_with_gradients(embedder, prefix_ids)
        hidden, cache, prompt_mask = continue_prefix(embedder, layers, len(prefix_ids), rests)
        cache = repeat_rows(key_values(cache), G, config)
        prompt_mask = prompt_mask.repeat_interleave(G, dim=0)  # (N, P + S)
        width = max(len(c) for c in continuations)
        ids = torch.full((len(rows), width), embedder.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, tokens in enumerate(continuations):  # right-padded: position k is token k of every row
            ids[row, :len(tokens)] = torch.as_tensor(tokens)
            mask[row, :len(tokens)] = 1
        ids, mask = ids.to(embedder.device), mask.to(embedder.device)
        positions = prompt_mask.sum(dim=1, keepdim=True) + torch.arange(width, device=embedder.device)
        states, _ = continue_forward(decoder, ids, torch.cat([prompt_mask, mask], dim=1), positions, cache)
    last = hidden[:, -1].repeat_interleave(G, dim=0)
    if embedder.autocast_dtype is not None:
        last, states = last.float(), states.float()
    return last, states, ids, mask

