"""Reasoning generation through a static key/value cache: on CUDA, compiled decoding replayed as CUDA graphs.

Through a ``DynamicCache``, ``generate`` grows every layer's keys and values by concatenation and launches each
kernel of each layer again for every token: for a small model on a GPU that launch overhead, not arithmetic,
sets the pace. A ``StaticCache`` holds the keys and values in tensors allocated once at their final size, so every
decoder step has the same shapes and addresses; on CUDA, transformers' ``generate`` then compiles the step
(``torch.compile``, mode ``reduce-overhead``) and replays it as a CUDA graph, token after token.

`ReasoningEmbedder.generation_cache` chooses:

| setting | cache | decoding |
|---|---|---|
| ``auto`` (default) | static on CUDA, dynamic elsewhere | compiled on CUDA |
| ``static`` | static on every device | compiled on CUDA, eager elsewhere (the CPU tests' way to compare the caches) |
| ``dynamic`` | dynamic | eager |

A CPU has no launch overhead of that size to remove, and compiling there takes about a minute even for a 2-layer
model: ``auto`` keeps the dynamic cache on it.

A static cache's unused slots are masked out, so every step attends over the keys and values a dynamic cache would
hold: the same computation. The tests find the same greedy tokens, the same sampled tokens under one seed and the
same next-token distributions at every step, family by family, on a CPU; on CUDA the compiled kernels may round
differently from the eager ones, so a near-tie can go the other way, which the GPU check measures. With prefix
reuse, the cache that ``generate`` continues (the shared prefix and each prompt's rest) is copied into a static
cache sized for the whole generation and the embedding read after it (`static_cache`). A model whose cache
transformers cannot make static generates with the dynamic cache, said once in the log.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

logger = logging.getLogger(__name__)

Embedder = Any  #: a `sr3_agent.model.embedder.ReasoningEmbedder` (not imported here: it imports this module)

GENERATION_CACHES = ("auto", "static", "dynamic")

#: a static cache's slots are rounded up to a multiple of this, and never shrink on one embedder: on CUDA each new
#: cache length (a shape of the compiled step) costs a compilation
SLOT_STEP = 64


def check_generation_cache(setting: str) -> str:
    """``setting`` if it is one of `GENERATION_CACHES`, else a ValueError that lists them."""
    if setting not in GENERATION_CACHES:
        raise ValueError(f"generation_cache must be auto, static or dynamic; got {setting!r} (auto: a static cache and "
                         "compiled decoding on CUDA, the dynamic cache elsewhere).")
    return setting


def static_cache_problem(model: Any) -> str | None:
    """Why transformers cannot generate with a static cache for ``model`` (a causal LM), or None when it can."""
    import transformers
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    if not hasattr(StaticLayer(max_cache_len=1), "cumulative_length"):  # `static_cache` appends at the layer's length
        return (f"transformers {transformers.__version__}'s static cache layers do not track their length "
                "(those of 5.25 do)")
    if not model._supports_default_dynamic_cache():
        return f"{type(model).__name__} keeps a cache of its own kind"
    try:
        cache = StaticCache(config=model.config, max_cache_len=SLOT_STEP)
    except (KeyError, ValueError, TypeError, NotImplementedError) as error:  # a layer type with no static form
        return f"transformers has no static cache for its layers ({type(error).__name__}: {error})"
    if not all(layer.is_compileable for layer in cache.layers):
        return "some of its cache layers cannot be static"
    return None


def uses_static_cache(embedder: Embedder) -> bool:
    """Whether ``embedder`` generates through a static cache now (its `generation_cache` setting on its device).

    Where the setting asks for one and the model's cache cannot be static, the dynamic cache is used and the log
    says why, once per embedder; the first generation through a static cache on CUDA says that it compiles."""
    setting = check_generation_cache(embedder.generation_cache)
    if setting == "dynamic" or (setting == "auto" and embedder.device.type != "cuda"):
        return False
    problem = static_cache_problem(embedder._causal_lm())
    if problem is not None:
        embedder._say_once("static-cache", "%s: %s; reasoning is generated with the dynamic cache (the same tokens, "
                           "slower on a GPU)", embedder.name, problem)
        return False
    if embedder.device.type == "cuda" and "static-cache-compiles" not in embedder._said:
        embedder._said.add("static-cache-compiles")
        logger.info("%s: reasoning is generated through a static key/value cache with compiled decoding; the first "
                    "generation of each batch shape compiles (tens of seconds)", embedder.name)
    return True


def cache_length(embedder: Embedder, needed: int) -> int:
    """Slots of a static cache for ``needed`` tokens on ``embedder``: rounded up to a multiple of `SLOT_STEP`,
    and at least the longest so far (so that a generation does not compile again for a shorter cache)."""
    length = max(-(-needed // SLOT_STEP) * SLOT_STEP, getattr(embedder, "_static_cache_length", 0))
    embedder._static_cache_length = length
    return length


def static_cache(embedder: Embedder, needed: int, layers: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                 repeats: int = 1) -> Any:
    """A ``StaticCache`` with room for ``needed`` tokens (`cache_length` slots) holding ``layers`` (per layer (keys,
    values), each (B, kv heads, T, head dim); none: an empty cache), each row ``repeats`` times in a row (G samples
    of one prompt), as `kvcache.repeat_rows` lays out a dynamic one. No gradients: a static cache is written in place.

    Both of `generate_reasoning`'s paths (whole prompts, and after the shared prefix) generate through such a cache,
    so that they share its lengths, and on CUDA its compiled steps."""
    from transformers import StaticCache

    cache = StaticCache(config=embedder._decoder().config, max_cache_len=cache_length(embedder, needed))
    with torch.no_grad():
        for index, (keys, values) in enumerate(layers):
            cache.update(keys.repeat_interleave(repeats, dim=0), values.repeat_interleave(repeats, dim=0), index)
    return cache
