"""Compute precision: fp32, or bf16 mixed precision where the device computes bf16 natively.

Weights, the optimiser and the losses stay in fp32; under bf16 only the decoder runs in autocast and
its hidden states come back in fp32 (`ReasoningEmbedder.hidden_states`). fp16 would need a loss
scaler, so it is not offered.
"""

from __future__ import annotations

from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16
    or AMX (where bf16 matrix products run at about twice the fp32 rate; elsewhere they are emulated and slower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return any(check() for check in checks if check is not None)
    return False


def autocast_dtype_for(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` setting on ``device``: ``"fp32"`` -> None (off);
    ``"bf16"`` -> bfloat16 mixed precision (fp32 weights, optimiser and losses); ``"auto"`` -> bf16
    where the device computes it natively (`native_bf16`), else fp32. (fp16 would need a loss scaler: use bf16.)"""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {list(PRECISIONS)}.")
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Mixed precision in ``dtype`` on ``device`` (an `autocast_dtype_for` result); ``None``: a context that
    changes nothing."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
