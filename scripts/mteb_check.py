"""An independent check of sr3's retrieval metric: MTEB's own retrieval evaluation of an exported
model against ``sr3 eval``'s nDCG@10, on the same queries and documents, offline.

MTEB's retrieval tasks download their data from the Hugging Face hub, which is not reachable here.
This script gives MTEB a custom `AbsTaskRetrieval` whose ``load_data`` fills the task from a local
dataset instead (a bundled one, or a BEIR folder): the same seeded cut that ``sr3 eval`` makes
(``--num-queries``, ``--corpus-docs``, ``--seed``). Documents reach MTEB as sr3's encoders see them
(``title`` and ``text`` on two lines), so both sides embed identical strings.

- sr3's side: `ReasoningEmbedder` (direct queries) + exact search + ``pytrec_eval`` (`run_eval`).
- MTEB's side: ``SentenceTransformer(folder)`` + MTEB's search and its own metric code.

Usage::

    python scripts/mteb_check.py --model base --dataset wordnet-revdict --num-queries 100 --corpus-docs 500

Needs ``pip install -e ".[mteb]"`` (mteb is not a dependency of sr3 itself). Prints both nDCG@10 values and their difference.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def mteb_task(dataset, name: str):
    """A custom MTEB retrieval task over an in-memory `RetrievalDataset` (no download)."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=name, description=f"sr3's {dataset.name} ({dataset.split} split), loaded from the local copy.",
            reference="https://arxiv.org/abs/2510.07048", dataset={"path": f"local/{dataset.name}", "revision": "local"},
            type="Retrieval", category="t2t", modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"],
            main_score="ndcg_at_10", date=("2025-01-01", "2025-12-31"), domains=["Written"], task_subtypes=[],
            license="not specified", annotations_creators="derived", dialect=[], sample_creation="found",
            bibtex_citation="")

        def load_data(self, num_proc: int | None = None, **kwargs) -> None:
            if self.data_loaded:
                return
            corpus = Dataset.from_dict({"id": list(dataset.doc_ids), "text": list(dataset.documents),
                                        "title": [""] * len(dataset.doc_ids)})
            queries = Dataset.from_dict({"id": list(dataset.query_ids), "text": list(dataset.query_texts)})
            self.dataset = {"default": {"test": {"corpus": corpus, "queries": queries, "top_ranked": None,
                                                 "relevant_docs": {q: dict(d) for q, d in dataset.qrels.items()}}}}
            self.data_loaded = True

    return LocalRetrieval()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", help="'base' or a folder written by sr3")
    parser.add_argument("--dataset", default="wordnet-revdict")
    parser.add_argument("--num-queries", type=int, default=100)
    parser.add_argument("--corpus-docs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=128, help="prompt tokens kept per text (sr3 eval's default)")
    parser.add_argument("--output", default=None, help="JSON file for the two results")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mteb
    from sentence_transformers import SentenceTransformer

    from sr3_agent.evaluation.eval_command import QueryPaths, embedder_systems
    from sr3_agent.model.embedder import ReasoningEmbedder
    from sr3_agent.evaluation.evaluate import evaluate_systems
    from sr3_agent.serving.export import export_embedder
    from sr3_env import load_dataset

    data = load_dataset(args.dataset).subset(num_queries=args.num_queries, num_docs=args.corpus_docs, seed=args.seed)
    embedder = ReasoningEmbedder.from_pretrained(None if args.model == "base" else args.model, device="cpu",
                                                 max_length=args.max_length, batch_size=32)
    sr3_row = evaluate_systems(data, embedder_systems(QueryPaths(embedder, 1), "sr3", reasoning=False))[0]

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_embedder(embedder, Path(tmp) / "model")
        model = SentenceTransformer(str(folder), device="cpu")
        task = mteb_task(data, f"sr3{data.name.replace('-', '')}Local")
        result = mteb.evaluate(model, task, cache=None, show_progress_bar=False,
                               encode_kwargs={"batch_size": 32})
        scores = result.task_results[0].scores["test"][0]
    report = {"dataset": data.name, "queries": len(data.query_ids), "docs": len(data.doc_ids),
              "sr3_ndcg@10": sr3_row["ndcg@10"], "mteb_ndcg_at_10": scores["ndcg_at_10"],
              "sr3_recall@100": sr3_row["recall@100"], "mteb_recall_at_100": scores.get("recall_at_100"),
              "sr3_mrr@10": sr3_row["mrr@10"], "mteb_mrr_at_10": scores.get("mrr_at_10"),
              "mteb_version": mteb.__version__}
    report["ndcg@10_difference"] = report["mteb_ndcg_at_10"] - report["sr3_ndcg@10"]
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
