"""A random-weight model folder of a published architecture, with the bundled tokenizer: a stand-in for
timing and memory where the real weights cannot be had (a GPU machine with no network, as in
``benchmarks/gpu_check.sh``).

Time and memory depend on the architecture and the sizes, not on the weights, with one exception that
makes the stand-in a worst case: a random model never chooses to write ``<|embed_token|>``, so every
reasoning runs to its token cap. What it retrieves means nothing; no quality figure may come from it.

    python benchmarks/random_model.py --shape Qwen2.5-1.5B-Instruct --out DIR
    python benchmarks/random_model.py --shape SmolLM2-135M-Instruct --out DIR

``--shape`` is one of the Qwen2.5-Instruct sizes whose published configs `scripts/memory_budget.py`
holds, or a folder or bundled model whose ``config.json`` is at hand. The vocabulary keeps the
architecture's size (the LM head's memory is the real one); the tokenizer only uses its first rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # the published Qwen2.5 configs
from memory_budget import QWEN25, qwen25_config  # noqa: E402


def architecture(shape: str):
    """The transformers config of ``shape``: a published Qwen2.5 size, or a model folder's own config."""
    from transformers import AutoConfig

    from sr3_agent.model.models import resolve_model

    if shape in QWEN25:
        return qwen25_config(shape)
    return AutoConfig.from_pretrained(resolve_model(shape))


def write_random_model(shape: str, out: str | Path, tokenizer: str | None = None, dtype: torch.dtype = torch.bfloat16,
                       seed: int = 0) -> Path:
    """Write a folder that ``ReasoningEmbedder.from_pretrained`` loads: ``shape``'s architecture with
    random weights (in ``dtype``) and ``tokenizer``'s tokenizer and chat template (default: the bundled one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sr3_agent.model.models import resolve_model

    out = Path(out)
    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    config = architecture(shape)
    if config.vocab_size < len(tok):
        raise ValueError(f"{shape}'s vocabulary ({config.vocab_size}) is smaller than the tokenizer's ({len(tok)}).")
    config.pad_token_id, config.bos_token_id, config.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # initialising 1.5B weights is minutes on 2 cores
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", required=True, help=f"one of {', '.join(QWEN25)}, or a model folder or bundled name")
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument("--tokenizer", default=None, help="a model whose tokenizer to use (default: the bundled one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write_random_model(args.shape, args.out, args.tokenizer, seed=args.seed)
    print(f"wrote a random-weight {args.shape} to {out}")
    return out


if __name__ == "__main__":
    main()
