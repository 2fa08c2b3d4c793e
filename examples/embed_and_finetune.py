"""The reasoning embedder in a few lines: embed, reason then embed, fine-tune briefly, compare.

Run as is for a small but real run (the bundled SmolLM2-135M-Instruct, about 5 minutes on 2 CPU
cores); the tests run it with ``--steps 1`` and tiny sets.
"""

import argparse

import numpy as np

from sr3_agent import EvalConfig, ReasoningEmbedder, SFTConfig, markdown_table, run_eval, train_sft


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="SFT optimiser steps")
    parser.add_argument("--train-queries", type=int, default=320, help="training queries (wordnet-revdict train)")
    parser.add_argument("--dev-queries", type=int, default=50, help="dev queries scored before and after SFT; the better "
                        "of the two is kept (wordnet-revdict dev)")
    parser.add_argument("--eval-queries", type=int, default=100, help="held-out queries (wordnet-revdict test)")
    parser.add_argument("--eval-docs", type=int, default=1000, help="documents in the evaluation sub-corpus")
    parser.add_argument("--output-dir", default="runs/example-sft")
    args = parser.parse_args(argv)

    embedder = ReasoningEmbedder.from_pretrained()  # the bundled model, plus <|embed_token|>
    docs = embedder.encode_documents(["a domesticated carnivorous mammal", "a financial institution"])
    query = embedder.encode_queries(["dog"])
    print("cosine similarity of 'dog' to the two documents:", np.round(query @ docs.T, 3))
    rollout = embedder.generate_reasoning(["dog"], max_new_tokens=24)
    print("the model's reasoning before it embeds 'dog':", repr(rollout.reasoning[0]))

    base = ReasoningEmbedder.from_pretrained()
    tuned = train_sft(SFTConfig(steps=args.steps, num_queries=args.train_queries, corpus_docs=args.train_queries,
                                batch_size=min(16, args.train_queries), save_every=args.steps, eval_every=args.steps,
                                eval_queries=args.dev_queries, eval_docs=args.eval_docs, output_dir=args.output_dir),
                      embedder=embedder)
    print("SFT", tuned.selection and f"kept step {tuned.selection['step']} of {args.steps} on the dev split")
    config = EvalConfig(datasets=["wordnet-revdict"], num_queries=args.eval_queries, corpus_docs=args.eval_docs,
                        reasoning_tokens=16, baselines=False, output=f"{args.output_dir}/results.json")
    rows = run_eval(config, embedders=[("base", base), (f"SFT {args.steps} steps", tuned)])
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
