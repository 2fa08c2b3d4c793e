"""Tiny random-weight causal LMs of many families, built from their configs: the architecture matrix
of the tests (`tests/test_prefix_reuse.py`) and of ``benchmarks/bench_architectures.py``.

Each is 2 layers of width 32, sized for the tokenizer it is given (the tests use the bundled SmolLM2
tokenizer); sliding-window families get `SHORT_WINDOW`, the case in which a shared-prefix layout with
padding inside its rows would not be exact.
"""

from __future__ import annotations

from typing import Any

#: An attention window shorter than most test prompts (a reasoning prompt's markup alone is about 40
#: tokens of the SmolLM2 tokenizer) and longer than the shortest: some layouts fit it, most do not.
SHORT_WINDOW = 48

#: family -> (transformers model type, config settings beyond the shared tiny sizes)
TINY_FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "qwen2": ("qwen2", {}),
    "qwen2-sliding": ("qwen2", {"use_sliding_window": True, "sliding_window": SHORT_WINDOW, "max_window_layers": 0}),
    "qwen3": ("qwen3", {"head_dim": 8}),
    "mistral-sliding": ("mistral", {"sliding_window": SHORT_WINDOW}),
    "gemma3-sliding": ("gemma3_text", {"sliding_window": SHORT_WINDOW, "head_dim": 8,
                                       "layer_types": ["sliding_attention", "full_attention"]}),
    "gemma2-sliding": ("gemma2", {"sliding_window": SHORT_WINDOW, "head_dim": 8}),
    "phi3": ("phi3", {}),
    "olmo2": ("olmo2", {}),
    "granite": ("granite", {}),
}


def sliding_families() -> list[str]:
    """The families of `TINY_FAMILIES` with a sliding window."""
    return sorted(family for family, (_, settings) in TINY_FAMILIES.items() if "sliding_window" in settings)


def tiny_model(family: str, tokenizer: Any, seed: int = 0, window: int | None = None, max_positions: int = 512) -> Any:
    """A 2-layer random-weight causal LM of ``family`` (`TINY_FAMILIES`) sized for ``tokenizer``, in
    eval mode; ``window`` replaces a sliding-window family's window."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, settings = TINY_FAMILIES[family]
    if window is not None and "sliding_window" in settings:
        settings = {**settings, "sliding_window": window}
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=max_positions, tie_word_embeddings=True,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                  bos_token_id=tokenizer.bos_token_id, **settings)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def tiny_tokenizer() -> Any:
    """The bundled SmolLM2 tokenizer with ``<|embed_token|>`` added (a fresh copy)."""
    from transformers import AutoTokenizer

    from sr3_agent.model.embedder import EMBED_TOKEN
    from sr3_agent.model.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model())
    tokenizer.add_special_tokens({"additional_special_tokens": [EMBED_TOKEN]})
    return tokenizer
