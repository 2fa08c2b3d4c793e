"""GRPO from TRL, rewarded by RetrievalEmbed-v0: TRL samples the reasonings and updates the model;
`RetrievalReward` embeds each completion and returns the environment's rank-based reward.

Run as is for a short real run on the bundled SmolLM2-135M-Instruct (or ``--model runs/sft/final``
after ``sr3 sft``); the tests run it with ``--steps 1`` and tiny sets.
"""

import argparse

try:
    from trl import GRPOConfig, GRPOTrainer
except ImportError as error:
    raise SystemExit(f'This example needs TRL: pip install "sr3[trl]" ({error})') from error

from sr3_agent import ReasoningEmbedder, RetrievalReward, grpo_dataset
from sr3_env import load_dataset


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="an `sr3 sft` folder or a causal LM (default: bundled)")
    parser.add_argument("--steps", type=int, default=10, help="GRPO optimiser steps")
    parser.add_argument("--queries", type=int, default=200, help="training queries (wordnet-revdict train)")
    parser.add_argument("--docs", type=int, default=1000, help="documents in the environment's index")
    parser.add_argument("--output-dir", default="runs/example-grpo")
    args = parser.parse_args(argv)

    embedder = ReasoningEmbedder.from_pretrained(args.model)
    embedder.model.generation_config.eos_token_id = embedder.stop_token_ids  # a reasoning ends at <|embed_token|>
    data = load_dataset("wordnet-revdict", split="train").subset(num_queries=args.queries, num_docs=args.docs, seed=0)
    reward = RetrievalReward(embedder, data, reward="log_rank", top_k=10)  # encodes the index once
    config = GRPOConfig(output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=8,
                        num_generations=4, max_completion_length=24, learning_rate=1e-5,
                        beta=0.0,  # TRL's default. With beta > 0 TRL reloads a reference model from the model's
                        # name_or_path, so start from a folder written by save_pretrained (`sr3 sft` writes one).
                        temperature=1.0, use_cpu=True, bf16=False, report_to=["tensorboard"], logging_steps=1,
                        save_strategy="no", seed=0)
    trainer = GRPOTrainer(model=embedder.model, processing_class=embedder.tokenizer, reward_funcs=reward,
                          train_dataset=grpo_dataset(embedder, data), args=config)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if f"rewards/{reward.__name__}/mean" in entry]
    for entry in logs:
        print(f"step {entry['step']}: reward {entry[f'rewards/{reward.__name__}/mean']:.3f}, "
              f"mean gold rank {entry['sr3/rank_mean']:.1f} of {len(data.doc_ids)}")
    embedder.save_pretrained(f"{args.output_dir}/final")
    return logs


if __name__ == "__main__":
    main()
