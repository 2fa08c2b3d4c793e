"""How much GPU memory a training stage needs: a budget computed from a model's config and the run's sizes.

Parameter counts are exact: the model is built on PyTorch's ``meta`` device (no weights, no memory)
from its config, so any architecture transformers knows is counted as it is, and LoRA's adapters
are counted on every linear layer but the LM head (peft's ``all-linear``). The rest is a model of
what sr3's loops keep, under bf16 mixed precision (fp32 weights, bf16 compute):

- weights, fp32, 4 bytes a parameter; with full fine-tuning autocast also keeps a bf16 copy of each
  weight for the forward (2 bytes), and RL keeps a frozen fp32 reference copy for its KL term (with
  LoRA the reference is the model with its adapters off: no copy);
- gradients (4 bytes) and AdamW's two moments (8 bytes) of every trained parameter;
- activations kept for the backward pass, per token and layer: the inputs of the linear layers and
  of the gated MLP's product (bf16), and the fp32 inputs of the two norms; with activation
  checkpointing only each layer's fp32 input is kept, and one layer's activations while it is recomputed;
- the LM head on the reasoning tokens (RL's log-probabilities): bf16 logits, their fp32 copy, the
  log-softmax and its gradient, 14 bytes a token and vocabulary entry;
- the corpus index (fp32, on the GPU) and a fixed allowance for the CUDA context and the allocator's slack.

It is an estimate, not a measurement: `benchmarks/gpu_check.sh` measures the peak of a real run
beside it (``torch.cuda.max_memory_allocated``). ``python scripts/memory_budget.py`` prints the table
of docs/scaling.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GIB = 1024 ** 3
#: the CUDA context, cuBLAS workspaces and the caching allocator's fragmentation (an allowance, not a law)
OVERHEAD_BYTES = int(1.5 * GIB)


@dataclass(frozen=True)
class ModelShape:
    """What the budget needs of a model: exact parameter counts and the sizes of one layer."""

    parameters: int  #: all parameters
    lora_parameters: int  #: LoRA adapters of one rank, on every linear layer but the LM head
    layers: int
    hidden: int
    intermediate: int
    q_dim: int  #: attention heads x head size
    kv_dim: int  #: key/value heads x head size
    vocab: int


def model_shape(config: Any) -> ModelShape:
    """The `ModelShape` of a transformers config, counted on the meta device (exact for any architecture)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    lora = sum(module.in_features + module.out_features for module in model.modules()
               if isinstance(module, torch.nn.Linear) and module is not head)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(parameters=sum(p.numel() for p in model.parameters()), lora_parameters=lora,
                      layers=text.num_hidden_layers, hidden=text.hidden_size, intermediate=text.intermediate_size,
                      q_dim=heads * head_dim, kv_dim=getattr(text, "num_key_value_heads", heads) * head_dim,
                      vocab=text.vocab_size)


@dataclass(frozen=True)
class RunSizes:
    """The sizes of a run that decide its memory (the `sr3 train` options of the same names)."""

    lora: bool = True
    lora_rank: int = 64
    activation_checkpointing: bool = True
    max_length: int = 512  #: document prompt tokens (the worst case: every document this long)
    query_tokens: int = 96  #: a reasoning prompt: the instruction's markup and a query
    reasoning_tokens: int = 128
    sft_batch_size: int = 32
    hard_negatives: int = 1
    queries_per_step: int = 8
    group_size: int = 8
    corpus_docs: int = 20000


def activation_bytes_per_token(shape: ModelShape, checkpointing: bool) -> tuple[int, int]:
    """(bytes kept per token for the whole decoder, bytes of one layer's recompute per token)."""
    one_layer = 2 * (4 * shape.hidden + 2 * shape.q_dim + 2 * shape.kv_dim + 3 * shape.intermediate) + 4 * 2 * shape.hidden
    if checkpointing:
        return shape.layers * 4 * shape.hidden, one_layer
    return shape.layers * one_layer, 0


def stage_budgets(shape: ModelShape, sizes: RunSizes) -> dict[str, dict[str, float]]:
    """Peak bytes of the SFT and RL stages, term by term (GiB) and in all (``total``)."""
    trained = shape.lora_parameters * sizes.lora_rank if sizes.lora else shape.parameters
    fixed = {"weights": 4 * shape.parameters + (0 if sizes.lora else 2 * shape.parameters),
             "gradients_and_adamw": 12 * trained, "index": 4 * shape.hidden * sizes.corpus_docs,
             "overhead": OVERHEAD_BYTES}
    kept, recompute = activation_bytes_per_token(shape, sizes.activation_checkpointing)
    sft_rows = sizes.sft_batch_size * (2 + sizes.hard_negatives)  # queries, positives, hard negatives
    sft_tokens = sft_rows * sizes.max_length
    rl_rows = sizes.queries_per_step * sizes.group_size
    rl_tokens = rl_rows * (sizes.query_tokens + sizes.reasoning_tokens)
    budgets = {
        "sft": {**fixed, "activations": sft_tokens * (kept + recompute),
                "lm_head": 14 * sizes.sft_batch_size * sizes.reasoning_tokens * shape.vocab},
        "rl": {**fixed, "reference": 0 if sizes.lora else 4 * shape.parameters,
               "activations": rl_tokens * (kept + recompute),
               "lm_head": 14 * rl_rows * sizes.reasoning_tokens * shape.vocab},
    }
    return {stage: {**{k: v / GIB for k, v in terms.items()}, "total": sum(terms.values()) / GIB}
            for stage, terms in budgets.items()}


def largest_fitting(shape: ModelShape, sizes: RunSizes, gpu_gib: float, field: str, stage: str,
                    limit: int = 4096) -> int:
    """The largest value of ``field`` (a `RunSizes` batch size) whose ``stage`` fits ``gpu_gib``; 0 if none."""
    best = 0
    value = 1
    while value <= limit and stage_budgets(shape, RunSizes(**{**asdict(sizes), field: value}))[stage]["total"] <= gpu_gib:
        best, value = value, value * 2
    return best
