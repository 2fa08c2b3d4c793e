"""Show a model's greedy reasonings beside what they did to retrieval: the ones that helped most and hurt most.

    python scripts/show_reasonings.py runs/train/rl/final --num-queries 200 --corpus-docs 3000 --show 10

For each test query (the same seeded sample and sub-corpus `sr3 eval` uses), the model writes its
reasoning greedily; the relevant document's rank under the direct, reasoned and fused embeddings is
computed over the corpus (whose embeddings come from `sr3 eval`'s cache when it is there). Prints a
Markdown table of the `--show` reasonings with the largest gain and loss of rank (half each) and the
token rate; writes every row as JSON with `--output`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sr3_agent.evaluation.eval_command import QueryPaths, embedder_systems, evaluation_set, load_embedder
from sr3_agent.config import EvalConfig
from sr3_agent.model.embedder import fuse


def gold_ranks(queries: np.ndarray, docs: np.ndarray, gold: list[np.ndarray]) -> np.ndarray:
    """(N,) the best rank (1 = first) of each query's relevant rows by inner product."""
    scores = queries @ docs.T
    return np.array([int((row > row[rows].max()).sum()) + 1 for row, rows in zip(scores, gold)])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="wordnet-revdict")
    optional = lambda value: None if value == "none" else int(value)  # noqa: E731
    parser.add_argument("--num-queries", type=optional, default=200, help="test queries sampled (none: all)")
    parser.add_argument("--corpus-docs", type=optional, default=3000, help="sub-corpus size (none: whole corpus)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reasoning cap (sr3 eval's default)")
    parser.add_argument("--precision", default="auto", help="fp32, bf16 or auto, as in sr3 eval")
    parser.add_argument("--show", type=int, default=10)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    config = EvalConfig(models=[args.model], datasets=[args.dataset], num_queries=args.num_queries,
                        corpus_docs=args.corpus_docs, reasoning_tokens=args.max_new_tokens, baselines=False,
                        precision=args.precision)
    dataset, note = evaluation_set(args.dataset, config)
    _, embedder = load_embedder(args.model, config)  # as sr3 eval loads it: its precision, batch size and prompt length
    paths = QueryPaths(embedder, args.max_new_tokens)
    docs = embedder_systems(paths, "model", reasoning=False)[0].corpus_embeddings(dataset)  # cached by sr3 eval
    texts = list(dataset.query_texts)
    rollout_texts, reasoned = [], []
    for start in range(0, len(texts), embedder.batch_size):  # the reasonings and their embeddings, written once
        rollout = embedder.generate_reasoning(texts[start:start + embedder.batch_size], max_new_tokens=args.max_new_tokens)
        rollout_texts += [(text, bool(wrote)) for text, wrote in zip(rollout.reasoning, rollout.emitted.tolist())]
        vectors = rollout.embeddings if rollout.embeddings is not None else embedder.embed(rollout.input_ids,
                                                                                             rollout.attention_mask)
        reasoned.append(vectors.detach().float().cpu().numpy())
    gold = [dataset.relevant_rows(q)[0] for q in dataset.query_ids]
    direct = paths.direct(texts)
    vectors = {"direct": direct, "reasoning": np.concatenate(reasoned), "fused": fuse(direct, np.concatenate(reasoned))}
    ranks = {way: gold_ranks(queries, docs, gold) for way, queries in vectors.items()}
    rows = [{"query": text, "relevant": [dataset.documents[r] for r in rows_], "reasoning": reasoning, "wrote_token": wrote,
             **{f"rank_{way}": int(r[i]) for way, r in ranks.items()}}
            for i, (text, rows_, (reasoning, wrote)) in enumerate(zip(texts, gold, rollout_texts))]
    change = np.log(ranks["direct"]) - np.log(ranks["reasoning"])  # > 0: the reasoning ranked the document higher
    order = np.argsort(-change)
    half = args.show // 2
    picked = list(order[:args.show - half]) + list(order[::-1][:half][::-1])
    print(f"{args.model} on {dataset.name} ({note or 'whole'}): token written by the model in "
          f"{np.mean([r['wrote_token'] for r in rows]):.0%} of {len(rows)} greedy reasonings; reasoning ranked the "
          f"relevant document higher than direct for {int((change > 0).sum())} queries, lower for {int((change < 0).sum())}.\n")
    print("| query | relevant | reasoning (greedy) | token | rank direct | rank reasoning | rank fused |")
    print("|---|---|---|:-:|---:|---:|---:|")
    for i in picked:
        r = rows[i]
        cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        print(f"| {cell(r['query'])} | {cell(', '.join(r['relevant']))} | {cell(r['reasoning'])} | "
              f"{'yes' if r['wrote_token'] else 'no'} | {r['rank_direct']} | {r['rank_reasoning']} | {r['rank_fused']} |")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
