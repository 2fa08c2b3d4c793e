"""Key/value caches for the embedder: a shared prompt prefix computed once, and decoder steps that continue a cache.

Every prompt of one kind (document, direct query, reasoning) starts with the same tokens: the chat
markup and the system message, before the user's text. Their keys and values depend only on the
model's weights, so `ReasoningEmbedder` computes them once per model version and continues from
them for every text. A batch then has this layout (``P`` prefix tokens, rests left-padded)::

    [ prefix (P, cached, shared) ][ pad ... pad | rest of prompt 1 ]
    [ prefix                     ][ pad | rest of prompt 2 ........ ]

Padding sits between the prefix and each rest and is masked out; position ids count real tokens
only, so each row sees exactly the positions it would see alone (a test compares every layout with
the plain forward of the whole prompt, architecture by architecture).

Sliding-window and chunked attention count cache *slots*, not positions: padding inside a row
pushes the prefix further back than it is, and once a layout spans more slots than the window a
row no longer sees what it would see alone. `attention_window` gives the shortest window of a
model and `layout_is_exact` says whether a layout stays inside it; where it does not, the embedder
takes the plain path (every prompt whole, padded on the left only), which is exact.

The functions here are thin: they call the model's own decoder with a ``transformers`` ``DynamicCache``.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch

#: ``transformers`` 5 names the decoder's cache argument ``cache``; 4.x named it ``past_key_values``.
_CACHE_ARGUMENT: dict[type, str] = {}


def cache_argument(module: Any) -> str:
    """The name under which ``module.forward`` (a decoder, or ``generate``'s model) takes its cache."""
    kind = type(module)
    if kind not in _CACHE_ARGUMENT:
        parameters = inspect.signature(module.forward).parameters
        _CACHE_ARGUMENT[kind] = "cache" if "cache" in parameters else "past_key_values"
    return _CACHE_ARGUMENT[kind]


def returned_cache(output: Any) -> Any:
    """The cache a forward pass or ``generate(return_dict_in_generate=True)`` returned (either name)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def attention_window(config: Any) -> int | None:
    """The fewest cache slots any layer of the model attends over (its sliding window or attention
    chunk), or None when every layer attends to the whole sequence.

    Read from the (text) config as transformers' own layers read it: ``layer_types`` names the kind
    of each layer where the model has it (Gemma 2/3, Qwen2 with ``use_sliding_window``, Cohere 2...);
    without it a set ``sliding_window`` applies to every layer (Mistral)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = getattr(config, "layer_types", None)
    windows = []
    sliding = getattr(config, "sliding_window", None)
    if sliding is not None and (layer_types is None or any("sliding" in kind for kind in layer_types)):
        windows.append(int(sliding))
    chunk = getattr(config, "attention_chunk_size", None)
    if chunk is not None and (layer_types is None or any("chunk" in kind for kind in layer_types)):
        windows.append(int(chunk))
    return min(windows) if windows else None


def layout_is_exact(window: int | None, span: int, padded_inside: bool) -> bool:
    """Whether a layout of ``span`` cache slots, with padding inside its rows or not, gives every row
    what it would get alone under an attention ``window`` (`attention_window`).

    Without padding inside a row, slot distances are position distances: always exact. With it, the
    layout is exact while every slot is within the window of every later one and no cache layer
    drops a slot (a sliding layer keeps ``window - 1``): ``span <= window - 1``."""
    return window is None or not padded_inside or span <= window - 1


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest list of tokens that every sequence starts with."""
    if not sequences:
        return 0
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for other in sequences[1:]:
        length = next((i for i in range(length) if other[i] != first[i]), length)
    return length


def key_values(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values), each (batch, kv heads, tokens, head dim)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def expanded_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: int, config: Any) -> Any:
    """A new ``DynamicCache`` holding ``layers`` (batch 1, or ``rows`` already) for ``rows`` rows.

    Expansion is a view: the first decoder step appends to it by concatenation, which copies, so the
    shared tensors are never written to (and gradients through them add up over the rows)."""
    from transformers import DynamicCache

    data = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)


def repeat_rows(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], repeats: int, config: Any) -> Any:
    """A ``DynamicCache`` in which each row of ``layers`` appears ``repeats`` times in a row (G samples
    of one prompt); differentiable."""
    from transformers import DynamicCache

    data = [(k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)) for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)


def continue_forward(decoder: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                     cache: Any) -> tuple[torch.Tensor, Any]:
    """Run ``decoder`` over ``input_ids`` (B, S) after the ``cache``'s tokens.

    ``attention_mask`` covers the cached tokens and the new ones, (B, cached + S); ``position_ids``
    (B, S) are the new tokens' positions. Returns the new tokens' final hidden states (B, S, H) and
    the grown cache."""
    output = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     use_cache=True, **{cache_argument(decoder): cache})
    return output.last_hidden_state, returned_cache(output)


def pad_rests(rests: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids, mask)`` (B, S) int64 tensors on the CPU."""
    width = max(len(r) for r in rests)
    ids = torch.full((len(rests), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rests), width), dtype=torch.long)
    for row, rest in enumerate(rests):
        if rest:
            ids[row, width - len(rest):] = torch.as_tensor(list(rest), dtype=torch.long)
            mask[row, width - len(rest):] = 1
    return ids, mask


def positions_after(prefix_length: int | torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, S) position ids of left-padded tokens that follow ``prefix_length`` real tokens (an int, or
    (B,) per row): real tokens count on from there; padding gets a harmless in-range value."""
    offset = prefix_length if isinstance(prefix_length, int) else prefix_length.view(-1, 1)
    return offset + (mask.cumsum(dim=1) - 1).clamp(min=0)
