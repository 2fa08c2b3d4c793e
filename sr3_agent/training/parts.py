"""What the training loops share: their data, the lazily refreshed training index, the step's
batch, the texts of queries that read feedback, LoRA, the TensorBoard writer, and the end of a step
(checkpoint, stop) and of the loop (the final model).

`sr3_agent.training.sft` and `sr3_agent.training.rl` both import from here and never from each other, so each loop
still reads top to bottom on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr3_agent.training.checkpoint import save_checkpoint
from sr3_agent.config import RLConfig, SFTConfig
from sr3_agent.training.distributed import Processes
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.evaluation.feedback import feedback_texts
from sr3_env import LazyIndex, RetrievalDataset, load_mixture

logger = logging.getLogger(__name__)


# -- batches --------------------------------------------------------------------------------------

def batch_query_rows(num_queries: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The query rows of a step: distinct, drawn from a generator seeded by (seed, step), so a
    resumed run sees exactly the batches the uninterrupted one would have."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(num_queries, size=min(batch_size, num_queries), replace=False)


def false_negative_mask(gold: list[np.ndarray], column_rows: np.ndarray) -> torch.Tensor:
    """(B, C) bool: True where column j holds a document relevant to query i and j is not i's label
    (column i). Such columns are not negatives of query i and are left out of its InfoNCE."""
    relevant = np.stack([np.isin(column_rows, rows) for rows in gold])
    np.fill_diagonal(relevant[:, :len(gold)], False)
    return torch.as_tensor(relevant)


def best_ranks(index: LazyIndex, vectors: torch.Tensor, gold: list[np.ndarray], k: int) -> np.ndarray:
    """(N,) the best rank of each query's relevant rows under (N, D) query vectors, in one index search
    (which re-encodes the stale rows it touches)."""
    found = index.search(vectors, gold, k=k)
    return np.array([ranks.min() for ranks in found.gold_ranks], dtype=np.float64)


def feedback_query_texts(embedder: ReasoningEmbedder, index: LazyIndex, data: RetrievalDataset, texts: list[str],
                         gold: list[np.ndarray], k: int) -> list[str]:
    """Each query text as a second turn reads it (`sr3_agent.evaluation.feedback`): the query and the top ``k``
    documents its direct embedding retrieves in the index, in one search (collective, as every search)."""
    found = index.search(torch.as_tensor(embedder.encode_queries(texts, reasoning=False)), gold, k=k)
    documents = data.documents
    return feedback_texts(embedder, texts, [[documents[row] for row in top] for top in found.top_rows])


# -- data, index, LoRA -----------------------------------------------------------------------------

def training_data(config: SFTConfig | RLConfig) -> RetrievalDataset:
    """The training queries and the mining corpus (a sub-corpus that keeps every relevant document); with several
    datasets, their mixture (`sr3_env.load_mixture`: each one's share of the queries and of the corpus by its weight).
    A dev split carved off train (``dev_fraction``) is left out."""
    return load_mixture(config.dataset, split=config.split, num_queries=config.num_queries,
                        num_docs=config.corpus_docs, seed=config.seed, dev_fraction=config.dev_fraction)


def add_lora(model: Any, config: SFTConfig | RLConfig, trainable_tokens: list[int] | None = None) -> Any:
    """LoRA adapters on every linear layer of ``model``; the embedding rows of ``trainable_tokens`` (the
    latent way's think tokens) are trained too (peft's trainable tokens), as new tokens must be."""
    from sr3_env.errors import DependencyNotInstalled

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise DependencyNotInstalled("--lora needs peft: `pip install peft`.") from error
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear",
                      task_type="CAUSAL_LM", **({"trainable_token_indices": trainable_tokens} if trainable_tokens else {}))
    return get_peft_model(model, lora)


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in the backward pass (transformers' own checkpointing, non-reentrant,
    so LoRA's frozen inputs need no gradient trick)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(base, "activation_checkpointing_enable"):  # transformers 5 (the older name is deprecated there)
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def training_index(data: RetrievalDataset, embedder: ReasoningEmbedder, config: SFTConfig | RLConfig,
                   saved: dict[str, Any] | None = None, processes: Processes = Processes()) -> LazyIndex:
    """The lazily refreshed index over the training corpus, encoded by the model being trained;
    ``saved`` (from a checkpoint) restores its rows and their versions instead of encoding them.
    With several processes the rows are sharded: each holds and re-encodes a block of them, and
    searches are collective (every process searches once per step)."""
    index = LazyIndex(data.documents, embedder, refresh=config.refresh, refresh_budget=config.refresh_budget,
                      refresh_every=config.refresh_every if config.refresh == "periodic" else None,
                      device=embedder.device, embeddings=None if saved is None else saved["embeddings"],
                      process_group="world" if processes.distributed else None)
    if saved is not None:
        index.row_versions[:] = saved["row_versions"][index.shard.start:index.shard.stop]
    return index


def index_state(index: LazyIndex, processes: Processes = Processes()) -> dict[str, Any] | None:
    """What a checkpoint keeps of the index: all its rows and the model version that made each, in
    one piece whatever the number of processes (collective: the main process gathers the shards and
    gets the state; the others get None)."""
    shards = processes.gather_to_main(index.state_dict())
    if shards is None:
        return None
    return {"embeddings": torch.cat([shard["embeddings"] for shard in shards]),
            "row_versions": np.concatenate([shard["row_versions"] for shard in shards])}


# -- TensorBoard ----------------------------------------------------------------------------------

def make_writer(output_dir: Path, processes: Processes = Processes()) -> Any:
    """A TensorBoard writer on the main process; None on the others (they write nothing)."""
    if not processes.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(output_dir / "tensorboard"))


def write_scalars(writer: Any, scalars: dict[str, float], step: int) -> None:
    if writer is not None:
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)


def close_writer(writer: Any) -> None:
    if writer is not None:
        writer.close()


# -- the end of a step and of the loop ------------------------------------------------------------

def checkpoint_or_stop(output_dir: Path, done: int, steps: int, save_every: int, state: Callable[[], dict[str, Any]],
                       stop: Any, processes: Processes = Processes()) -> bool:
    """After step ``done`` of ``steps``: save a checkpoint when due (every ``save_every`` steps, the
    last step, or when any process was asked to stop; ``state()`` builds it, on every process, since
    gathering the index is collective) and say whether the loop stops now (every process stops after
    the same step; the checkpoint lets ``--resume`` continue)."""
    stopping = processes.any(stop.requested)
    if stopping or done % save_every == 0 or done == steps:
        built = state()
        if processes.is_main:
            save_checkpoint(output_dir, done, built)
    if stopping:
        logger.warning("stopped after step %d; continue with --resume", done)
    return stopping


def finish(embedder: ReasoningEmbedder, output_dir: Path, writer: Any, processes: Processes = Processes()
           ) -> ReasoningEmbedder:
    """The end of a loop that ran all its steps: the logs closed, the model in eval mode and saved as
    ``output_dir/final`` by the main process, which every process waits for."""
    close_writer(writer)
    embedder.model.eval()
    if processes.is_main:
        embedder.save_pretrained(output_dir / "final")
    processes.wait()
    return embedder
