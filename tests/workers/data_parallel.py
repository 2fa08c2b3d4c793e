"""Run by tests/test_distributed_training.py under ``accelerate launch --multi_gpu --num_processes 2``.

``gradients MODEL OUT``: each process computes a loss on its own texts through the DDP-routed
`ReasoningEmbedder.hidden_states`, with the LM head applied outside the DDP forward (the answer
template loss), and writes, per process, the gradients after DDP's averaging and the gradients of
its own loss alone (computed on an unwrapped copy).

``sft|rl OUT ARGS...``: run `train_sft` / `train_rl` with the config ``sr3 sft|rl ARGS`` parses,
then write each process's final weights and version (rank 0 alone writes the run's files).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from sr3_agent.training.distributed import prepare_data_parallel, start_processes
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.training.sft import answer_template_loss

QUERIES = [["a cat on a mat", "the price of tea"], ["volcanoes erupt lava", "rules of chess", "a river bank"]]
DOCUMENTS = [["Cats are small mammals."], ["Chess is a board game.", "Tea is a drink."]]


def loss(embedder: ReasoningEmbedder, rank: int) -> torch.Tensor:
    """Two forward passes before one backward (as in SFT: queries, then documents); the LM head is
    applied outside the forward (the answer template loss)."""
    total = torch.zeros(())
    for texts, prompt in ((QUERIES[rank], embedder.prompts.query), (DOCUMENTS[rank], embedder.prompts.document)):
        ids, mask = embedder.direct_batch(texts, prompt)
        hidden = embedder.hidden_states(ids, mask)
        total = total + embedder.pool(hidden, ids, mask).sum(0).pow(2).sum() + answer_template_loss(embedder, hidden, ids)
    return total


def gradients(model: str, out: Path) -> None:
    processes = start_processes("cpu")
    embedder = ReasoningEmbedder.from_pretrained(model, device="cpu")
    embedder.model.train()
    alone = copy.deepcopy(embedder)
    prepare_data_parallel(embedder, processes)
    loss(embedder, processes.rank).backward()
    loss(alone, processes.rank).backward()
    grads = {name: p.grad.clone() for name, p in embedder.model.named_parameters()}
    own = {name: p.grad.clone() for name, p in alone.model.named_parameters()}
    torch.save({"averaged": grads, "own": own}, out / f"gradients-{processes.rank}.pt")


def train(command: str, out: Path, argv: list[str]) -> None:
    from sr3_agent.cli import COMMANDS, build_parser
    from sr3_agent.config import config_from_args
    from sr3_agent.training.distributed import launched_world_size
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft

    config = config_from_args(COMMANDS[command][0], build_parser().parse_args([command, *argv]))
    trained = (train_sft if command == "sft" else train_rl)(config, progress=False)
    rank = int(torch.distributed.get_rank()) if launched_world_size() > 1 else 0
    torch.save({"weights": trained.model.state_dict(), "version": trained.version}, out / f"weights-{rank}.pt")


if __name__ == "__main__":
    if sys.argv[1] == "gradients":
        gradients(sys.argv[2], Path(sys.argv[3]))
    else:
        train(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
