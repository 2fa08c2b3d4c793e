"""The model card (``README.md``) of an exported embedder: what it is, how it was trained, how it
scores, how to use it, and its limits.

Everything in the card is read from files sr3 wrote: the evaluation table from a ``results.json``
of ``sr3 train`` / ``sr3 eval`` (found next to the model, or given), the training settings from the
``config.json`` that ``sr3 sft`` / ``sr3 rl`` keep in their output folder (following each stage's
``model`` back to the one it started from), and the check of the export against `ReasoningEmbedder`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@100", "mrr@10")
#: labels `sr3 train` gives its stages in results.json, by the stage's folder name
PIPELINE_LABELS = {"sft": "SFT", "rl": "SFT+RL"}


@dataclass
class CardFacts:
    """What the card says about one exported model."""

    name: str  #: the folder name of the export
    source: str  #: what was exported: 'base' or the model folder
    base_model: str  #: the causal LM the embedder is built on
    dim: int
    max_length: int
    prompts: dict[str, str]  #: document, query, reasoning
    check: dict[str, Any] = field(default_factory=dict)  #: `compare_with_embedder`'s report
    results: list[dict[str, Any]] = field(default_factory=list)  #: rows of an evaluation table
    results_source: str | None = None
    own_labels: tuple[str, ...] = ()  #: the rows of ``results`` that are this model
    training: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  #: (stage folder, settings)
    licence: str | None = None  #: what the base model's licence asks a shared derivative to say
    selection: dict[str, Any] | None = None  #: how training chose the model on its dev split (its way to serve)


def find_results(model_dir: Path) -> tuple[Path | None, tuple[str, ...]]:
    """The ``results.json`` of the run a model folder belongs to, and the system labels of its rows.

    ``sr3 train`` writes ``OUT/results.json`` for ``OUT/sft/final`` and ``OUT/rl/final``.
    """
    for folder in (model_dir, model_dir.parent, model_dir.parent.parent):
        path = folder / "results.json"
        if path.is_file():
            stage = PIPELINE_LABELS.get(model_dir.parent.name) if model_dir.name == "final" else None
            labels = (stage,) if stage and folder == model_dir.parent.parent else ()
            return path, labels
    return None, ()


def load_results(path: Path, labels: tuple[str, ...] = (), spec: str | None = None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Rows of a results.json, and the labels of the rows that are this model (``sr3 eval`` labels a
    model by the folder it was given, ``sr3 train`` by its stage)."""
    rows = json.loads(path.read_text())
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "system" in r for r in rows):
        raise ValueError(f"{path} is not a results.json of sr3 eval / sr3 train (a list of rows with 'system').")
    systems = {str(r["system"]) for r in rows}
    own = set(labels)
    if spec is not None:
        own |= {label for label in (spec, str(Path(spec))) if f"{label} (direct)" in systems}
    return rows, tuple(sorted(own))


def training_settings(model_dir: Path, limit: int = 4) -> list[tuple[str, dict[str, Any]]]:
    """Settings of the training stages that led to ``model_dir``, latest first: the ``config.json``
    of its output folder, then that of the model it started from, and so on."""
    stages: list[tuple[str, dict[str, Any]]] = []
    folder = model_dir
    while len(stages) < limit:
        path = folder.parent / "config.json"
        if folder.name != "final" or not path.is_file():
            break
        settings = json.loads(path.read_text())
        if not isinstance(settings, dict) or "steps" not in settings:
            break
        stages.append((folder.parent.name, settings))
        start = settings.get("model")
        if not start:
            break
        folder = Path(start)
    return stages


def _table(rows: list[dict[str, Any]], own: tuple[str, ...]) -> list[str]:
    chosen = any("reasoned_share" in row for row in rows)  # auto rows: the share of the queries the model reasoned on
    lines = ["| system | dataset | queries | docs | nDCG@10 | Recall@100 | MRR@10 |" + (" reasoned |" if chosen else ""),
             "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if chosen else "")]
    for row in rows:
        mine = any(str(row["system"]).startswith(f"{label} (") for label in own)
        name = f"**{row['system']}**" if mine else str(row["system"])
        share = [f"{row['reasoned_share']:.2f}" if "reasoned_share" in row else ""] if chosen else []
        lines.append(f"| {name} | {row.get('dataset', '')} | {row.get('queries', '')} | {row.get('docs', '')} | "
                     + " | ".join([f"{row[m]:.3f}" if isinstance(row.get(m), (int, float)) else "" for m in METRICS]
                                  + share) + " |")
    notes = sorted({str(row["note"]) for row in rows if row.get("note")})
    return lines + [""] + [f"Note: {note}." for note in notes]


def _settings(stages: list[tuple[str, dict[str, Any]]]) -> list[str]:
    keys = ("model", "dataset", "split", "num_queries", "corpus_docs", "steps", "batch_size", "queries_per_step",
            "group_size", "learning_rate", "infonce_temperature", "reasoning_temperature", "reward", "reasoning_tokens",
            "temperature", "max_new_tokens",  # their old names, in configs saved before the rename
            "max_length", "lora", "seed", "precision")
    lines = []
    for stage, settings in stages:
        shown = {key: settings[key] for key in keys if key in settings}
        lines += [f"Stage `{stage}`:", "", "| setting | value |", "|---|---|"]
        lines += [f"| {key} | `{value}` |" for key, value in shown.items()] + [""]
    return lines


def _way(selection: dict[str, Any] | None) -> list[str]:
    """The card's sentence on the query way training chose on its dev split."""
    if not selection:
        return ["No stage selected this model on a dev split: its query way was not chosen (direct is the default)."]
    way, (low, high) = selection["query_way"], selection["dev_interval"]
    sentences = [f"Training chose the **{way}** query embedding on its dev split: nDCG@10 {selection['dev_ndcg@10']:.3f} "
                 f"[{low:.3f}, {high:.3f}] on {selection['dev_queries']} dev queries (step {selection['step']} of its "
                 "stage). sr3's `encode_queries` uses it by default."]
    if way != "direct":
        sentences.append("sentence-transformers cannot write a reasoning: `encode_query` here is the direct way; "
                         "use sr3 (below) for the chosen one.")
    return [" ".join(sentences)]


def render(facts: CardFacts) -> str:
    """The model card as Markdown, with the YAML header the Hugging Face hub reads."""
    prompts = facts.prompts
    lines = [
        "---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, sr3, search-r3]", f"base_model: {facts.base_model}", "---", "",
        f"# {facts.name}", "",
        f"A retrieval embedder {'trained with' if facts.training else 'built by'} [sr3](https://arxiv.org/abs/2510.07048) "
        f"(Search-R3) from `{facts.base_model}`: a causal language model whose final hidden state at `<|embed_token|>` is "
        f"the embedding ({facts.dim} dimensions, L2-normalised, compared by cosine). Exported from `{facts.source}`"
        + ("." if facts.training else " (no sr3 training: the model as it comes, with the token added)."), "",
        "## Use", "", "```python", "from sentence_transformers import SentenceTransformer", "",
        f'model = SentenceTransformer("{facts.name}")', 'queries = model.encode_query(["what is a word for a large body of water"])',
        'documents = model.encode_document(["ocean\\na very large expanse of sea"])',
        "scores = model.similarity(queries, documents)", "```", "",
        "`encode_query` and `encode_document` use the prompts below; plain `encode` uses the document prompt. "
        "The folder uses only sentence-transformers' own modules and loads offline.", "",
        "### Reasoning embeddings (sr3)", "",
        "The model can also write a short analysis of a query before the embed token. That needs generation, "
        "which sentence-transformers does not do; use sr3 on this folder (it holds `sr3_embedder.json`):", "",
        "```python", "from sr3_agent import ReasoningEmbedder", "",
        f'embedder = ReasoningEmbedder.from_pretrained("{facts.name}")',
        'vectors = embedder.encode_queries(["..."], reasoning=True, max_new_tokens=32)',
        '# or let the model decide, query by query, whether to reason (greedy: the same query always decides the same)',
        'vectors, reasoned = embedder.encode_queries_auto(["..."], max_new_tokens=32)', "```", "",
        f"or serve it: `sr3 serve --model {facts.name}` (an OpenAI-style `/v1/embeddings` with a `reasoning` option: `true`, `false` or `\"auto\"`, "
        "and `/retrieve` over a corpus).", "",
        "## Prompts", "", "Each text goes through the model's chat template as `[system: prompt, user: text]`, "
        "then `<|embed_token|>` follows the assistant header.", "",
        "| use | system prompt |", "|---|---|",
        f"| query | {prompts['query']} |", f"| document | {prompts['document']} |",
        f"| query with reasoning (sr3 only) | {prompts['reasoning']} |", "",
        f"Texts are cut to {facts.max_length} prompt tokens (template included).", "",
    ]
    lines += ["## Way to serve", ""] + _way(facts.selection) + [""]
    lines += ["## Evaluation", ""]
    if facts.results:
        lines += [f"From `{facts.results_source}` (sr3's evaluation; this model's rows in bold where known):", ""]
        lines += _table(facts.results, facts.own_labels) + [""]
    else:
        lines += ["No evaluation table was found next to the model. Run `sr3 eval --models MODEL` and export with "
                  "`--results runs/eval/results.json` to include one.", ""]
    lines += ["## Training", ""]
    lines += _settings(facts.training) if facts.training else [
        "No sr3 training settings were found next to the source model (a base model, or a folder copied without its "
        "run's `config.json`).", ""]
    if facts.check:
        check = facts.check
        lines += ["## Export check", "",
                  "When exported, this folder was loaded with sentence-transformers and compared with sr3's "
                  "`ReasoningEmbedder` on real texts:", "",
                  "| texts | largest absolute difference | smallest cosine |", "|---|---:|---:|"]
        for kind in ("query", "document"):
            if f"{kind}_texts" in check:
                lines.append(f"| {check[f'{kind}_texts']} {kind} texts ({check.get('dataset', '')}) | "
                             f"{check[f'{kind}_max_abs_diff']:.2e} | {check[f'{kind}_min_cosine']:.6f} |")
        lines.append("")
    lines += [
        "## Limits", "",
        f"- A small model (`{facts.base_model}`): trained and tested on small English retrieval sets; expect "
        "less on other domains and languages.",
        "- Asymmetric: queries and documents need their own prompts (`encode_query` / `encode_document`); "
        "embeddings made without them were never trained.",
        f"- Texts longer than {facts.max_length} tokens are cut, the template's end kept.",
        "- Reasoning embeddings need generation (sr3, not sentence-transformers) and cost one generation per query; "
        "see the evaluation table for whether they pay for this model. Its `(auto)` rows are the model deciding "
        "for itself; their `reasoned` column is the share of the queries it chose to reason on.", "",
    ]
    if facts.licence:
        lines += ["## Licence", "", facts.licence, ""]
    return "\n".join(lines)
