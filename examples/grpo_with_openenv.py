"""GRPO from TRL against a remote environment: an OpenEnv server of RetrievalEmbed-v0 scores the
trainer's embeddings, over WebSocket sessions, as on a cluster where the environment runs apart.

Why a reward function and not TRL's ``environment_factory``: there the model acts by calling tools
in text, and the environment never sees the completion itself. Here the action is a vector, the
policy's hidden state at ``<|embed_token|>`` after the completion, which only the trainer can
compute. So TRL samples and updates as usual, and `RemoteRetrievalReward` embeds each completion
and steps one episode per completion on the server (``reset(query_id)``, ``step({"embedding"})``).

The server's documents must be embedded by the same model: export the starting model and give the
folder to the server as ``--encoder``. Its index is a frozen snapshot of that model (see
`RemoteRetrievalReward`); examples/grpo_with_trl.py keeps the lazily refreshed index in-process.

    sr3 export --model base --output runs/example-grpo-openenv/doc-encoder
    python -m sr3_env.openenv --dataset wordnet-revdict --split train --reward log_rank --top-k 10 \\
        --encoder runs/example-grpo-openenv/doc-encoder --port 8001
    python examples/grpo_with_openenv.py --server http://127.0.0.1:8001

Without ``--server`` the example does the first two steps itself (the server in a child process on
a loopback port, over a subset of wordnet-revdict written as a BEIR folder); the tests run it so
with ``--steps 1`` and tiny sets.
"""

import argparse
import subprocess
import sys
from pathlib import Path

try:
    from trl import GRPOConfig, GRPOTrainer
except ImportError as error:
    raise SystemExit(f'This example needs TRL and the OpenEnv server: pip install "sr3[trl,openenv]" ({error})') from error

from sr3_agent import ReasoningEmbedder, RemoteRetrievalReward, grpo_dataset
from sr3_agent.serving import export_embedder
from sr3_env import load_dataset
from sr3_env.serving import free_port, start_process, stop_process


def start_server(embedder: ReasoningEmbedder, data, folder: Path) -> tuple[subprocess.Popen, str]:
    """Export the starting model, write the data as BEIR, and start the OpenEnv server on them."""
    encoder = export_embedder(embedder, folder / "doc-encoder", overwrite=True)
    dataset = data.save_beir(folder / "data")
    port = free_port()
    command = [sys.executable, "-m", "sr3_env.openenv", "--env", "RetrievalEmbed-v0", "--port", str(port),
               "--dataset", str(dataset), "--split", data.split, "--encoder", str(encoder),
               "--reward", "log_rank", "--top-k", "10", "--device", "cpu"]
    return start_process(command, port, "the OpenEnv server"), f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an `sr3 sft` folder or a causal LM (default: bundled)")
    parser.add_argument("--server", default=None, help="a running server's address (default: start one)")
    parser.add_argument("--steps", type=int, default=10, help="GRPO optimiser steps")
    parser.add_argument("--queries", type=int, default=200, help="training queries (wordnet-revdict train)")
    parser.add_argument("--docs", type=int, default=1000, help="documents in the server's index")
    parser.add_argument("--output-dir", default="runs/example-grpo-openenv")
    args = parser.parse_args(argv)

    embedder = ReasoningEmbedder.from_pretrained(args.model)
    embedder.model.generation_config.eos_token_id = embedder.stop_token_ids  # a reasoning ends at <|embed_token|>
    data = load_dataset("wordnet-revdict", split="train").subset(num_queries=args.queries, num_docs=args.docs, seed=0)
    server, url = (None, args.server) if args.server else start_server(embedder, data, Path(args.output_dir))
    try:
        reward = RemoteRetrievalReward(embedder, url, connections=8)
        config = GRPOConfig(output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=8,
                            num_generations=4, max_completion_length=24, learning_rate=1e-5, beta=0.0,
                            temperature=1.0, use_cpu=True, bf16=False, report_to=["tensorboard"], logging_steps=1,
                            save_strategy="no", seed=0)
        trainer = GRPOTrainer(model=embedder.model, processing_class=embedder.tokenizer, reward_funcs=reward,
                              train_dataset=grpo_dataset(embedder, data), args=config)
        trainer.train()
    finally:
        if server is not None:
            stop_process(server)
    logs = [entry for entry in trainer.state.log_history if f"rewards/{reward.__name__}/mean" in entry]
    for entry in logs:
        print(f"step {entry['step']}: reward {entry[f'rewards/{reward.__name__}/mean']:.3f} from {url}, "
              f"mean gold rank {entry['sr3/rank_mean']:.1f} of {len(data.doc_ids)}")
    embedder.save_pretrained(f"{args.output_dir}/final")
    return logs


if __name__ == "__main__":
    main()
