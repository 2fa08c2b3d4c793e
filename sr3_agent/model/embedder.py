"""`ReasoningEmbedder`: a causal LM whose final hidden state at ``<|embed_token|>`` is the embedding.

Documents are embedded directly (a fixed document prompt, then the token). Queries are embedded
directly, or after reasoning: the model writes a short analysis (at most ``max_new_tokens``) and
stops at the token; if it never emits it, the token is appended and the miss is counted.

Every prompt goes through the model's chat template; a sequence always ends with the token, and
its embedding is the L2-normalised final-layer hidden state there. Sequences are padded on the left
with position ids counted from the first real token, so a text's embedding does not depend on the
batch it is in (a test checks it).

`ReasoningEmbedder` is the object users call; the jobs it delegates live beside it:
`sr3_agent.model.precision` (bf16 autocast where the device computes it natively),
`sr3_agent.model.generation` (writing the reasoning, `Rollout`) and `sr3_agent.model.prefix_reuse`
(each instruction's shared prompt prefix computed once per model version; `sr3_agent.model.kvcache`
holds the cache plumbing).

The class implements the `sr3_env` ``Encoder`` protocol (``dim``, ``version``,
``encode_documents``), so an environment's index can use the model directly; ``version`` goes up
after every optimiser step (``attach_optimizer``), which is what makes index rows stale.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from sr3_agent.model.chat import prompt_messages, stop_token_ids, supports_system_role, turn_end_id
from sr3_agent.model import generation, prefix_reuse
from sr3_agent.model.generation import Rollout
from sr3_agent.model.kvcache import pad_rests
from sr3_agent.model.models import resolve_model
from sr3_agent.model.precision import autocast
from sr3_env.errors import EncoderError

logger = logging.getLogger(__name__)

EMBED_TOKEN = "<|embed_token|>"
"""The token added to the vocabulary: the final-layer hidden state at it is the embedding."""
CONFIG_FILE = "sr3_embedder.json"


def latent_token_names(count: int) -> list[str]:
    """The think tokens of the latent way: ``<|think_0|>`` ... ``<|think_{count-1}|>``."""
    return [f"<|think_{i}|>" for i in range(count)]


@dataclass
class Prompts:
    """The instructions (system messages) of the three ways of embedding."""

    document: str = "Represent this document for retrieval."
    query: str = "Represent this search query for retrieving relevant documents."
    reasoning: str = ("Analyse this search query in a few short lines: its core concepts, key terms, synonyms and "
                      f"related topics. Then write {EMBED_TOKEN}.")


def fuse(direct: np.ndarray, reasoned: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """(N, D) fused query embeddings: ``(1 - weight) * direct + weight * reasoned``, L2-normalised
    (as HyDE averages a query with generated documents): a bad reasoning moves the query only half-way."""
    if np.shape(direct) != np.shape(reasoned):
        raise ValueError(f"direct and reasoned embeddings must have the same shape, got {np.shape(direct)} and "
                         f"{np.shape(reasoned)}.")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}.")
    mixed = (1 - weight) * np.asarray(direct, dtype=np.float32) + weight * np.asarray(reasoned, dtype=np.float32)
    return mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)


#: The new token's rows start as the turn-end token's, scaled by this: where the model would end its
#: answer it writes the embed token instead, so even the base model ends its reasonings with it.
TURN_END_SCALE = 1.01


def _add_token_rows(model: Any, size: int, turn_end_id: int | None) -> None:
    """Grow the vocabulary to ``size``. The new rows start as the turn-end token's (the one the chat
    template ends an answer with, else eos: `sr3_agent.model.chat.turn_end_id`) times `TURN_END_SCALE`, so
    the model writes ``<|embed_token|>`` where it would have ended its turn; without a turn-end token,
    at the mean of the old rows. Deterministic, so the same base model always gives the same embedder."""
    old = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        for matrix in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}.values():
            start = matrix.weight[turn_end_id] * TURN_END_SCALE if turn_end_id is not None else matrix.weight[:old].mean(dim=0)
            matrix.weight[old:] = start


def length_batches(lengths: Sequence[int], size: int, max_padding: float = 0.2) -> list[np.ndarray]:
    """Rows in batches of similar length: sorted by length, at most ``size`` rows a batch, and a batch
    is closed early where the next (longer) row would make padding more than ``max_padding`` of its
    tokens. Every row appears once."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[list[int]] = []
    total = 0
    for row in order:
        width = lengths[row]
        if batches and len(batches[-1]) < size and (len(batches[-1]) + 1) * width * (1 - max_padding) <= total + width:
            batches[-1].append(int(row))
            total += width
        else:
            batches.append([int(row)])
            total = width
    return [np.asarray(batch) for batch in batches]


def _batches(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


class ReasoningEmbedder:
    """A causal LM that reasons (optionally), then embeds. See the module docstring.

    Args:
        model: a ``transformers`` causal LM (optionally wrapped by peft).
        tokenizer: its tokenizer, already holding ``<|embed_token|>``.
        prompts: the instructions; saved with the model.
        max_length: prompt tokens kept per text (longer texts are truncated).
        batch_size: texts per forward pass when encoding and generating (64, as ``sr3 eval``'s; the dev
            evaluations and the training index of every stage encode with it).
        min_reasoning_tokens: tokens a reasoning has at least: the token and the turn end are held back
            until then (the direct embedding is the way to embed without reasoning).
        name: a label for logs and caches.
        latent_tokens: trained think tokens placed between the query prompt and the token in the latent
            way (``encode_queries(latent=True)``); the tokenizer must hold them already (`add_latent_tokens`
            adds them). 0: none, the embedder as without them.
    """

    frozen = False
    progress_min_texts = 1000  #: show a progress bar when encoding at least this many texts
    progress_min_reasoning = 32  #: and when writing reasonings for at least this many queries
    #: a DDP-wrapped `sr3_agent.training.distributed.HiddenStates` of ``model``, set by ``prepare_data_parallel``:
    #: `hidden_states` goes through it when gradients are on, so that they are averaged across processes
    parallel_forward: Any = None
    autocast_dtype: torch.dtype | None = None  #: bf16 mixed precision of the decoder (`precision.autocast_dtype_for`); None: off
    #: compute each instruction's shared prompt prefix once per model version and continue every text from
    #: its key/value cache; read reasoning embeddings from the generation's cache. False: the plain path
    #: (every prompt computed whole; a second pass after reasoning), kept as the reference for tests and benchmarks
    reuse_prefix: bool = True
    #: the key/value cache reasoning is generated with: ``auto`` (a static cache and compiled decoding on CUDA, the
    #: dynamic cache elsewhere), ``static`` (on every device; compiled on CUDA only) or ``dynamic``; the same
    #: computation either way (`sr3_agent.model.static_cache`)
    generation_cache: str = "auto"

    def __init__(self, model: Any, tokenizer: Any, *, prompts: Prompts | None = None, max_length: int = 256,
                 batch_size: int = 64, min_reasoning_tokens: int = 4, name: str | None = None,
                 latent_tokens: int = 0, selection: dict[str, Any] | None = None) -> None:
        if tokenizer.convert_tokens_to_ids(EMBED_TOKEN) in (None, tokenizer.unk_token_id):
            raise EncoderError(f"The tokenizer has no {EMBED_TOKEN}; build the embedder with "
                               "ReasoningEmbedder.from_pretrained(...), which adds it.")
        if tokenizer.chat_template is None:
            raise EncoderError("The tokenizer has no chat template; use an instruction-tuned model or set "
                               "tokenizer.chat_template before building the embedder.")
        self.model = model
        self.tokenizer = tokenizer
        self.prompts = prompts or Prompts()
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        if int(min_reasoning_tokens) < 0:
            raise ValueError(f"min_reasoning_tokens must be >= 0, got {min_reasoning_tokens}.")
        self.min_reasoning_tokens = int(min_reasoning_tokens)
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.embed_token_id = int(tokenizer.convert_tokens_to_ids(EMBED_TOKEN))
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        #: the instruction goes in a system message, or at the head of the user turn where the template has no system role
        self.system_role = supports_system_role(tokenizer)
        #: generation ends at the token or at the model's own turn end (its template's, its generation config's eos)
        self.stop_token_ids = [self.embed_token_id, *(i for i in stop_token_ids(tokenizer, getattr(model, "generation_config", None))
                                                      if i != self.embed_token_id)]
        self._said: set[str] = set()  #: notices logged once per embedder
        #: batches sent down the plain path because a shared-prefix layout would be longer than the attention window
        self.window_fallbacks = 0
        self._prefix_ids: dict[str, list[int]] = {}  #: per instruction (depends on the tokenizer only)
        self._prefixes: dict[str, tuple[tuple, list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = {}
        self.version = 0
        self.missing_embed_token = 0  #: reasoning rollouts in which the model never wrote the token
        self.reasoning_rollouts = 0  #: reasoning rollouts so far
        self.reasoning_tokens_written = 0  #: tokens the model wrote in them before the token (or the cap)
        self.latent_token_ids: list[int] = self._latent_ids(int(latent_tokens))  #: the think tokens, in order
        #: how training chose this model on its dev split: ``query_way`` (the way to serve: direct, reasoning, fused,
        #: auto or two-turn), its dev nDCG@10 and interval, the step; None for a model no stage selected
        self.selection = selection

    # -- construction, saving ---------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, **kwargs: Any) -> "ReasoningEmbedder":
        """Load a causal LM and add ``<|embed_token|>`` (resizing its embeddings) if it lacks one.

        ``None`` loads the bundled SmolLM2-135M-Instruct; a folder written by ``save_pretrained``
        restores the prompts and settings saved with it, its think tokens included. ``latent_tokens=k``
        gives the model k think tokens (`add_latent_tokens`) where it has fewer.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
        if EMBED_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [EMBED_TOKEN]})
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            _add_token_rows(model, len(tokenizer), turn_end_id(tokenizer))
        saved = Path(source) / CONFIG_FILE
        if saved.is_file():
            settings = json.loads(saved.read_text())
            kwargs = {"prompts": Prompts(**settings.pop("prompts")), **settings, **kwargs}
        kwargs.setdefault("name", Path(source).name if Path(source).exists() else str(source))
        latent_tokens = int(kwargs.pop("latent_tokens", 0))
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.eval()
        embedder = cls(model, tokenizer, **kwargs)
        if latent_tokens:
            embedder.add_latent_tokens(latent_tokens)
        return embedder

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write a folder that ``from_pretrained`` restores and plain transformers loads (LoRA merged)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):  # peft: save full weights, not an adapter
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        settings = {"prompts": asdict(self.prompts), "max_length": self.max_length, "batch_size": self.batch_size,
                    "min_reasoning_tokens": self.min_reasoning_tokens}
        if self.latent_tokens:  # written only when there are some: folders of models without them stay as they were
            settings["latent_tokens"] = self.latent_tokens
        if self.selection is not None:
            settings["selection"] = self.selection
        (directory / CONFIG_FILE).write_text(json.dumps(settings, indent=2))
        return directory

    # -- latent think tokens -------------------------------------------------------------------

    @property
    def latent_tokens(self) -> int:
        """How many think tokens the latent way places before the token (0: the model has no latent way)."""
        return len(self.latent_token_ids)

    def _latent_ids(self, count: int) -> list[int]:
        """The ids of the first ``count`` think tokens, which the tokenizer must hold."""
        if count < 0:
            raise ValueError(f"latent_tokens must be >= 0, got {count}.")
        vocabulary = self.tokenizer.get_vocab()
        missing = [token for token in latent_token_names(count) if token not in vocabulary]
        if missing:
            raise EncoderError(f"The tokenizer lacks the think tokens {missing}; add them with "
                               f"embedder.add_latent_tokens({count}) or ReasoningEmbedder.from_pretrained(..., "
                               f"latent_tokens={count}).")
        return [int(vocabulary[token]) for token in latent_token_names(count)]

    def add_latent_tokens(self, count: int) -> None:
        """Give the latent way ``count`` think tokens (``<|think_0|>``...): those the tokenizer lacks are added,
        and the model's new embedding rows (input and output) start at the mean of the existing rows: a
        deterministic, neutral start ("an average token") from which SFT trains them (`_add_token_rows`).
        A model's think tokens are never removed: ``count`` below `latent_tokens` is an error."""
        if int(count) < self.latent_tokens:
            raise ValueError(f"{self.name} has {self.latent_tokens} think tokens already; they cannot be removed "
                             f"(asked for {count}). Ask for {self.latent_tokens} or more.")
        missing = [t for t in latent_token_names(int(count)) if t not in self.tokenizer.get_vocab()]
        if missing:
            self.tokenizer.add_tokens(missing, special_tokens=True)  # the special-token list is left as it is
        model = self._causal_lm()
        if model.get_input_embeddings().num_embeddings < len(self.tokenizer):
            _add_token_rows(model, len(self.tokenizer), None)  # None: the mean of the existing rows
            self.bump_version()
        self.latent_token_ids = self._latent_ids(int(count))

    # -- the Encoder protocol -----------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fingerprint(self) -> str:
        """A hash of the weights, prompts and compute precision: keys caches of corpus embeddings made by
        this exact model (bf16 compute gives other vectors than fp32)."""
        import hashlib

        digest = hashlib.sha256(json.dumps(asdict(self.prompts)).encode() + str(self.max_length).encode())
        if self.autocast_dtype is not None:
            digest.update(str(self.autocast_dtype).encode())
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def version(self) -> int:
        """Goes up whenever the weights change; cached prompt prefixes are recomputed when it does."""
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = int(value)
        self._prefixes.clear()

    def bump_version(self) -> None:
        """Mark the weights as changed (index rows made before become stale)."""
        self.version += 1

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Bump ``version`` after every ``optimizer.step()``."""
        optimizer.register_step_post_hook(lambda *_: self.bump_version())

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised: document prompt, then the token; no reasoning."""
        return self._encode_direct(texts, self.prompts.document)

    @property
    def query_way(self) -> str:
        """The way `encode_queries` embeds queries by default: the one training chose on its dev split
        (``selection["query_way"]``: direct, reasoning, fused or auto), or direct for a model no stage selected."""
        return (self.selection or {}).get("query_way", "direct")

    def encode_queries(self, texts: Sequence[str], reasoning: bool | None = None, *, max_new_tokens: int = 64,
                       temperature: float = 0.0, fused: bool = False, latent: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised query embeddings, directly or after reasoning.

        ``reasoning=None`` (the default) embeds in the model's `query_way`, the way its training chose on the dev
        split (direct for a model that records none); ``reasoning=False`` always embeds directly.
        With ``reasoning=True`` the model writes at most ``max_new_tokens`` tokens (greedy when
        ``temperature`` is 0) and stops at the token; ``missing_embed_token_rate`` reports how
        often it had to be appended. With ``fused=True`` as well, the direct and the reasoned
        embeddings are combined (`fuse`). With ``latent=True`` the query prompt is followed by the
        model's `latent_tokens` think tokens, then the token: one forward, nothing written.
        """
        if reasoning is None:
            if latent or fused:  # explicit ways: as before the recorded way existed
                reasoning = False
            else:
                return self._encode_in_way(texts, max_new_tokens=max_new_tokens, temperature=temperature)
        if latent:
            if reasoning or fused:
                raise ValueError("latent=True is a way of its own (think tokens instead of a written reasoning): "
                                 "leave reasoning and fused False.")
            return self._encode_direct(texts, self.prompts.query, suffix=self.latent_suffix())
        if fused and not reasoning:
            raise ValueError("fused=True combines the direct and the reasoned embeddings: pass reasoning=True too.")
        if fused:
            return fuse(self._encode_direct(texts, self.prompts.query),
                        self.encode_queries(texts, reasoning=True, max_new_tokens=max_new_tokens, temperature=temperature))
        if not reasoning:
            return self._encode_direct(texts, self.prompts.query)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._progress(len(texts), "reasoning") as bar:
            for start, chunk in _batches(list(texts), self.batch_size):
                rollout = self.generate_reasoning(chunk, max_new_tokens=max_new_tokens, temperature=temperature)
                vectors = rollout.embeddings
                if vectors is None:  # the plain path: a second pass over the whole sequences
                    with torch.inference_mode():
                        vectors = self.embed(rollout.input_ids, rollout.attention_mask)
                out[start:start + len(chunk)] = vectors.float().cpu().numpy()
                bar.update(len(chunk))
        return out

    def _progress(self, total: int, desc: str) -> Any:
        """A progress bar over ``total`` queries written with reasoning (generation is slow: shown from
        `progress_min_reasoning` of them); one line per refresh when stderr is a file (`sr3_agent.logs`)."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="query", leave=False, disable=total < self.progress_min_reasoning)

    def _encode_in_way(self, texts: Sequence[str], *, max_new_tokens: int, temperature: float) -> np.ndarray:
        way = self.query_way
        if way == "auto":
            return self.encode_queries_auto(texts, max_new_tokens=max_new_tokens)[0]
        if way in ("reasoning", "fused"):
            return self.encode_queries(texts, reasoning=True, fused=way == "fused", max_new_tokens=max_new_tokens,
                                       temperature=temperature)
        if way != "direct":  # two-turn needs the documents a first turn retrieved: sr3 eval --turns 2
            self._say_once("way", "this model's way %r needs a corpus (sr3 eval --turns 2); encode_queries embeds "
                           "directly", way)
        return self._encode_direct(texts, self.prompts.query)

    def encode_queries_auto(self, texts: Sequence[str], *, max_new_tokens: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """The ``auto`` way: the model decides, query by query, whether to reason. Greedily (so the same
        model always decides the same) it either writes ``<|embed_token|>`` at once, and the query gets
        its direct embedding, or reasons first (up to ``max_new_tokens``) and gets the reasoned one.

        Returns (len(texts), dim) float32 L2-normalised embeddings and (len(texts),) bool: the queries it
        reasoned on. The reasonings count in `missing_embed_token_rate` and `mean_reasoning_length`."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        reasoned = np.ones(len(texts), dtype=bool)
        with self._progress(len(texts), "auto") as bar:
            for start, chunk in _batches(list(texts), self.batch_size):
                vectors, _, direct = self.auto_batch(chunk, max_new_tokens=max_new_tokens)
                out[start:start + len(chunk)], reasoned[start:start + len(chunk)] = vectors, ~direct
                bar.update(len(chunk))
        return out, reasoned

    def auto_batch(self, texts: Sequence[str], *, max_new_tokens: int = 64) -> tuple[np.ndarray, Rollout, np.ndarray]:
        """One batch of `encode_queries_auto`: (N, dim) embeddings, the greedy `Rollout` (its reasonings),
        and (N,) bool, the rows in which the model chose its direct embedding."""
        rollout = self.generate_reasoning(texts, max_new_tokens=max_new_tokens, temperature=0.0, min_new_tokens=0)
        vectors = rollout.embeddings
        if vectors is None:  # the plain path: a second pass over the whole sequences
            with torch.inference_mode():
                vectors = self.embed(rollout.input_ids, rollout.attention_mask)
        vectors = vectors.float().cpu().numpy()
        direct = generation.direct_choices(rollout).numpy()
        if direct.any():
            vectors[direct] = self._encode_direct([texts[i] for i in np.flatnonzero(direct)], self.prompts.query)
        return vectors, rollout, direct

    @property
    def missing_embed_token_rate(self) -> float:
        """Fraction of reasoning rollouts so far in which the model never wrote the token."""
        return self.missing_embed_token / self.reasoning_rollouts if self.reasoning_rollouts else 0.0

    @property
    def mean_reasoning_length(self) -> float:
        """Mean tokens written before the token (or the cap) in the reasoning rollouts so far."""
        return self.reasoning_tokens_written / self.reasoning_rollouts if self.reasoning_rollouts else 0.0

    def reset_reasoning_counters(self) -> None:
        """Start counting reasoning rollouts afresh (`missing_embed_token_rate`, `mean_reasoning_length`)."""
        self.missing_embed_token = self.reasoning_rollouts = self.reasoning_tokens_written = 0

    # -- prompts and tokens ---------------------------------------------------------------------

    def prompt_text(self, text: str, instruction: str) -> str:
        """The chat-templated prompt, ending where the assistant's answer starts."""
        return self.tokenizer.apply_chat_template(prompt_messages(instruction, text, system_role=self.system_role),
                                                  tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, texts: Sequence[str], instruction: str) -> list[list[int]]:
        """Token ids of each prompt; the user text is truncated so the prompt fits ``max_length``."""
        out = []
        for text in texts:
            ids = self.tokenizer(self.prompt_text(text, instruction), add_special_tokens=False)["input_ids"]
            if len(ids) > self.max_length:
                # cut the user text, not the template around it: re-template a shortened text
                room = self.max_length - (len(ids) - len(self.tokenizer(text, add_special_tokens=False)["input_ids"]))
                short = self.tokenizer.decode(self.tokenizer(text, add_special_tokens=False)["input_ids"][:max(room, 1)])
                ids = self.tokenizer(self.prompt_text(short, instruction), add_special_tokens=False)["input_ids"]
            out.append(ids)
        return out

    def pad_left(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad token lists into ``input_ids`` and ``attention_mask`` (B, T) on the model's device."""
        ids, mask = pad_rests(sequences, self.pad_token_id)
        return ids.to(self.device), mask.to(self.device)

    def latent_suffix(self) -> list[int]:
        """The think tokens the latent way places after the query prompt (the token follows them)."""
        if not self.latent_tokens:
            raise EncoderError(f"{self.name} has no think tokens, so it has no latent way; add them with "
                               "embedder.add_latent_tokens(k) or ReasoningEmbedder.from_pretrained(..., latent_tokens=k), "
                               "then train them (sr3 sft --latent-tokens k).")
        return list(self.latent_token_ids)

    def direct_batch(self, texts: Sequence[str], instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt + token for each text, left-padded: the input of a direct embedding."""
        return self.pad_left([ids + [self.embed_token_id] for ids in self.prompt_ids(texts, instruction)])

    # -- forward passes -------------------------------------------------------------------------

    def _causal_lm(self) -> Any:
        """The transformers model under a peft wrapper (the same object without one)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def _decoder(self) -> Any:
        return self._causal_lm().get_decoder()

    def _autocast(self, device: torch.device) -> Any:
        """Mixed precision for the decoder when `autocast_dtype` is set (weights stay as they are)."""
        return autocast(device, self.autocast_dtype)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) final-layer hidden states (after the final norm), without the LM head.

        With `autocast_dtype` (bf16 mixed precision) the decoder runs under autocast and the
        states come back in fp32, so the LM head and the losses run in fp32."""
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # count from the first real token
        with self._autocast(input_ids.device):
            if self.parallel_forward is not None and torch.is_grad_enabled():
                hidden = self.parallel_forward(input_ids, attention_mask, position_ids)
            else:
                hidden = self._decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                         use_cache=False).last_hidden_state
        return hidden.float() if self.autocast_dtype is not None else hidden

    def embed_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B,) index of the last embed token of each row (any padding side)."""
        is_embed = (input_ids == self.embed_token_id) & attention_mask.bool()
        if not bool(is_embed.any(dim=1).all()):
            missing = (~is_embed.any(dim=1)).nonzero().flatten().tolist()
            raise EncoderError(f"Rows {missing} hold no {EMBED_TOKEN}; every sequence must end with it "
                               "(use direct_batch or generate_reasoning to build inputs).")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return torch.where(is_embed, positions, -1).max(dim=1).values

    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, hidden) L2-normalised hidden state at the embed token."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        vectors = hidden[rows, self.embed_positions(input_ids, attention_mask)]
        return torch.nn.functional.normalize(vectors.float(), dim=-1)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, hidden) embeddings of token sequences that contain the embed token (keeps gradients)."""
        return self.pool(self.hidden_states(input_ids, attention_mask), input_ids, attention_mask)

    def hidden_states_after_prefix(self, sequences: Sequence[Sequence[int]], instruction: str
                                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Final hidden states of token sequences that start with ``instruction``'s shared prefix,
        computed after it: the prefix runs once for the batch (with gradients when they are on, so
        losses and gradients equal `hidden_states`'s; else from the per-version cache).

        Returns ``(hidden, ids, mask)`` of the part after the prefix, left-padded: (B, S, H),
        (B, S), (B, S); `pool` and the answer-template loss read them as they read whole sequences.
        None when it does not apply (prefix reuse off, data-parallel training, or a sequence that
        does not start with the prefix): use `hidden_states`."""
        return prefix_reuse.hidden_states_after_prefix(self, sequences, instruction)

    def grouped_hidden_states(self, rollout: Rollout
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The final hidden states a training pass over ``rollout`` needs, each prompt computed once.

        The shared prefix of the reasoning prompt runs once, each query's rest of the prompt once for
        its `Rollout.num_samples` samples, and each sample's continuation (reasoning + embed token,
        right-padded) after it; gradients flow through every part (the shared keys and values sum
        the gradients of the rows that read them), so losses and gradients equal those of
        `hidden_states` over the whole sequences.

        Returns ``(last, states, ids, mask)``: (N, H) the prompt's last position (it predicts the first
        continuation token), (N, L, H) the continuation's positions, (N, L) its tokens and (N, L) int64
        which of them are real;
        or None when it does not apply (prefix reuse off, data-parallel training, no prompt lengths,
        or prompts that do not start with the prefix): use `hidden_states`.
        """
        return prefix_reuse.grouped_hidden_states(self, rollout)

    # -- the shared prompt prefix (sr3_agent.model.prefix_reuse) ---------------------------------------

    def prefix_ids(self, instruction: str) -> list[int]:
        """The tokens every prompt of ``instruction`` starts with (the chat markup and system message
        before the user's text); empty when prompts share nothing."""
        return prefix_reuse.prefix_ids(self, instruction)

    def prefix(self, instruction: str) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
        """`prefix_ids` and their per-layer (keys, values) (batch 1, no gradients), computed once per
        model version (and model object, device and precision)."""
        return prefix_reuse.prefix(self, instruction)

    def _say_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._said:
            self._said.add(key)
            logger.warning(message, *args)

    def _encode_direct(self, texts: Sequence[str], instruction: str, suffix: Sequence[int] = ()) -> np.ndarray:
        """Embeddings of each text's prompt, then ``suffix`` (the latent way's think tokens), then the token."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prompts = [ids + list(suffix) + [self.embed_token_id] for ids in self.prompt_ids(texts, instruction)]
        shared = len(self.prefix_ids(instruction)) if self.reuse_prefix else 0  # tokens not computed per text
        from tqdm.auto import tqdm

        with torch.inference_mode(), tqdm(total=len(texts), desc="embedding", unit="text", leave=False,
                                          disable=len(texts) < self.progress_min_texts) as bar:
            for rows in length_batches([len(p) - shared for p in prompts], self.batch_size):
                batch = [prompts[i] for i in rows]
                split = prefix_reuse.split_prefix(self, batch, instruction)
                if split is None:  # the plain path: every prompt whole
                    out[rows] = self.embed(*self.pad_left(batch)).cpu().numpy()
                else:  # each prompt's rest after the shared prefix; every rest ends with the token
                    prefix_ids, layers, rests = split
                    hidden, _, _ = prefix_reuse.continue_prefix(self, layers, len(prefix_ids), rests)
                    out[rows] = torch.nn.functional.normalize(hidden[:, -1].float(), dim=-1).cpu().numpy()
                bar.update(len(rows))
        return out

    # -- reasoning ------------------------------------------------------------------------------

    def generate_reasoning(self, texts: Sequence[str], *, max_new_tokens: int = 64, temperature: float = 0.0,
                           top_p: float = 1.0, num_samples: int = 1, min_new_tokens: int | None = None) -> Rollout:
        """Write a reasoning for each text (``num_samples`` each, consecutive), ending with the token;
        the token and the turn end are held back for the first ``min_new_tokens`` tokens (default:
        `min_reasoning_tokens`, at most ``max_new_tokens``).

        With `reuse_prefix`, each prompt is computed once for its samples (after the shared prefix)
        and the embeddings are read from the generation's cache with one more decoder step
        (`Rollout.embeddings`), instead of a second pass over the whole sequences. `generation_cache`
        chooses the key/value cache the tokens are generated with (on CUDA by default a static one, compiled)."""
        return generation.generate_reasoning(self, texts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                             num_samples=num_samples, min_new_tokens=min_new_tokens)
