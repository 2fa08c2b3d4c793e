"""``sr3 export``: a trained embedder as a sentence-transformers folder that loads with one call.

The folder is the embedder's own ``save_pretrained`` folder (weights, tokenizer, chat template,
``sr3_embedder.json``, so ``sr3`` still loads it for reasoning) plus sentence-transformers' files,
made only of sentence-transformers' built-in modules (nothing to trust, nothing to download):

    modules.json                      Transformer -> Pooling("lasttoken") -> Normalize
    sentence_bert_config.json         the Transformer: chat-template messages, right padding, max length
    1_Pooling/config.json             the hidden state of the last real token
    2_Normalize/                      L2 normalisation
    config_sentence_transformers.json prompts {"query": ..., "document": ...}, cosine similarity
    README.md                         the model card (`sr3_agent.serving.model_card`)

How that reproduces `ReasoningEmbedder`'s direct embeddings exactly:

- Each text becomes ``[system: prompt, user: text]``: sentence-transformers puts the prompt of
  ``encode_query`` / ``encode_document`` in a system message when the tokenizer has a chat template
  (the "flat" message format: content as plain strings, as the template expects).
- The template used for embedding is the model's own template followed by ``<|embed_token|>``
  after the generation prompt, passed to ``apply_chat_template``; the tokenizer's own template is
  left as it is.
- The embedder pads on the left with position ids counted from the first real token; here batches
  are padded on the right, where the default position ids (0, 1, ...) are the same numbers, so every
  real token sees the same positions and the same (causal) context. The last real token is the
  embed token, and ``Pooling("lasttoken")`` reads its final hidden state.
- Truncation: the embedder keeps at most ``max_length`` prompt tokens, then adds the token; here
  ``model_max_length = max_length + 1`` and sentence-transformers restores the template's fixed
  ending (the embed token included) after cutting the text.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from sr3_agent.model.chat import USER_TURN_SEPARATOR, supports_system_role
from sr3_agent.model.embedder import EMBED_TOKEN, ReasoningEmbedder
from sr3_env.errors import Sr3Error

if TYPE_CHECKING:
    from sr3_agent.config import ExportConfig

logger = logging.getLogger(__name__)

#: files of the sentence-transformers layer (the rest of the folder is ``save_pretrained``'s).
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling", "2_Normalize")


class ExportError(Sr3Error, ValueError):
    """An embedder or an output folder that cannot be exported as asked; the message says how to fix it."""


def embedding_chat_template(tokenizer: Any) -> str:
    """The tokenizer's chat template, followed by ``<|embed_token|>`` after the generation prompt (and,
    for a template without a system role, preceded by the move of the prompt into the user turn)."""
    template = tokenizer.chat_template
    if not isinstance(template, str) or not template:
        raise ExportError("The tokenizer has no single chat template (None, or several named ones); export needs "
                          "the one template the embedder uses.")
    if not supports_system_role(tokenizer):
        template = _SYSTEM_INTO_USER + template
    return template + "{% if add_generation_prompt %}" + EMBED_TOKEN + "{% endif %}"


#: Where the template takes no system message, the prompt sentence-transformers sends as one goes at
#: the head of the user turn, as `sr3_agent.model.chat.prompt_messages` puts it.
_SYSTEM_INTO_USER = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set messages = [{'role': 'user', 'content': messages[0]['content'] + " + repr(USER_TURN_SEPARATOR)
    + " + messages[1]['content']}] + messages[2:] -%}"
    "{%- endif -%}")


def transformer_config(embedder: ReasoningEmbedder) -> dict[str, Any]:
    """``sentence_bert_config.json`` of the Transformer module (see the module docstring)."""
    last_hidden = {"method": "forward", "method_output_name": "last_hidden_state"}
    return {
        "transformer_task": "feature-extraction",
        "modality_config": {"text": dict(last_hidden), "message": {**last_hidden, "format": "flat"}},
        "module_output_name": "token_embeddings",
        "processing_kwargs": {
            "chat_template": {"add_generation_prompt": True, "chat_template": embedding_chat_template(embedder.tokenizer)},
            "text": {"padding_side": "right"},
        },
        "processor_kwargs": {"model_max_length": embedder.max_length + 1},  # the prompt, then the embed token
        "model_kwargs": {"dtype": "float32"},  # as ReasoningEmbedder.from_pretrained loads it
    }


def _versions() -> dict[str, str]:
    import sentence_transformers
    import torch
    import transformers

    return {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "pytorch": torch.__version__}


def write_sentence_transformers_files(embedder: ReasoningEmbedder, directory: Path) -> None:
    """Write the sentence-transformers layer of an exported folder (``ST_FILES``) into ``directory``."""
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]
    for idx, module in ((1, Pooling(embedder.dim, pooling_mode="lasttoken")), (2, Normalize())):
        path = f"{idx}_{type(module).__name__}"
        (directory / path).mkdir(parents=True, exist_ok=True)
        module.save(str(directory / path))
        modules.append({"idx": idx, "name": str(idx), "path": path,
                        "type": f"{type(module).__module__}.{type(module).__name__}"})
    (directory / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (directory / "sentence_bert_config.json").write_text(json.dumps(transformer_config(embedder), indent=2) + "\n")
    settings = {"model_type": "SentenceTransformer", "__version__": _versions(),
                "prompts": {"query": embedder.prompts.query, "document": embedder.prompts.document},
                "default_prompt_name": "document", "similarity_fn_name": "cosine"}
    (directory / "config_sentence_transformers.json").write_text(json.dumps(settings, indent=2) + "\n")


def check_output(directory: str | Path, overwrite: bool) -> Path:
    """``directory`` as a Path, if it can be written: absent, empty, or ``overwrite``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"{directory} is a file; give --output a folder path.")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise ExportError(f"{directory} is not empty; choose another --output, or pass --overwrite to replace it.")
    return directory


def prepare_output(directory: str | Path, overwrite: bool) -> Path:
    """An empty output folder: a non-empty one is an error unless ``overwrite`` (then it is emptied)."""
    directory = check_output(directory, overwrite)
    if directory.is_dir() and any(directory.iterdir()):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def export_embedder(embedder: ReasoningEmbedder, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``embedder`` as a folder that ``SentenceTransformer(directory)`` loads (no model card)."""
    directory = prepare_output(directory, overwrite)
    embedder.save_pretrained(directory)
    write_sentence_transformers_files(embedder, directory)
    logger.info("exported %s to %s", embedder.name, directory)
    return directory


def compare_with_embedder(embedder: ReasoningEmbedder, directory: str | Path, queries: Sequence[str],
                          documents: Sequence[str], *, batch_size: int = 8) -> dict[str, Any]:
    """Load ``directory`` with sentence-transformers and compare its ``encode_query`` /
    ``encode_document`` with the embedder's direct embeddings of the same texts.

    Returns the largest absolute difference of any coordinate for queries and for documents, the
    smallest cosine between the two embeddings of a text, and the numbers of texts.
    """
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), device=str(embedder.device))
    report: dict[str, Any] = {}
    for kind, texts, ours, theirs in (
            ("query", list(queries), lambda t: embedder.encode_queries(t, reasoning=False), model.encode_query),
            ("document", list(documents), embedder.encode_documents, model.encode_document)):
        if not texts:
            continue
        expected = np.asarray(ours(texts), dtype=np.float32)
        actual = np.asarray(theirs(texts, batch_size=batch_size, convert_to_numpy=True), dtype=np.float32)
        if actual.shape != expected.shape:
            raise ExportError(f"The exported folder gives {kind} embeddings of shape {actual.shape}; the embedder "
                              f"gives {expected.shape}.")
        report[f"{kind}_texts"] = len(texts)
        report[f"{kind}_max_abs_diff"] = float(np.abs(actual - expected).max())
        report[f"{kind}_min_cosine"] = float((actual * expected).sum(axis=1).min())
    return report


def check_texts(dataset: str, count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``count`` real queries and ``count`` real documents of a dataset (a seeded sample), with the
    longest document among them so that truncation is checked too."""
    from sr3_env import load_dataset

    data = load_dataset(dataset)
    rng = np.random.default_rng(seed)
    query_rows = rng.choice(len(data.query_texts), size=min(count, len(data.query_texts)), replace=False)
    documents = data.documents
    doc_rows = list(rng.choice(len(documents), size=min(count, len(documents)), replace=False))
    longest = int(np.argmax([len(text) for text in documents]))
    if count and longest not in doc_rows:
        doc_rows[-1] = longest
    return [data.query_texts[i] for i in query_rows], [documents[i] for i in doc_rows]


def prompts_of(embedder: ReasoningEmbedder) -> dict[str, str]:
    """The embedder's three instructions, for the model card."""
    return asdict(embedder.prompts)


def licence_notice(config: Any) -> str | None:
    """What a shared model built on this architecture's weights must say (Gemma's terms ask for their notice)."""
    from sr3_agent.model.models import BUNDLED_MODELS

    model_type = (config.get_text_config() if hasattr(config, "get_text_config") else config).model_type
    return BUNDLED_MODELS["gemma-3-270m"].notice if model_type.startswith("gemma") else None


def run_export(config: "ExportConfig") -> dict[str, Any]:
    """``sr3 export``: load the model, write the folder and its card, check it against the embedder.

    Returns the output path and the check's report (empty with ``check_texts=0``).
    """
    from sr3_agent.serving.model_card import CardFacts, find_results, load_results, render, training_settings
    from sr3_agent.model.models import DEFAULT_MODEL

    source = config.base_model if config.model == "base" else config.model
    model_dir = Path(config.model) if config.model != "base" else None
    if model_dir is not None and not model_dir.is_dir():
        raise ExportError(f"--model {config.model!r} is not a folder; give 'base' or a folder written by sr3 "
                          "(sr3 sft / rl / train write OUTPUT_DIR/final).")
    check_output(config.output, config.overwrite)  # fail before the slow part
    results_path, labels = (Path(config.results), ()) if config.results else (
        find_results(model_dir) if model_dir else (None, ()))
    try:
        rows, own = load_results(results_path, labels, config.model) if results_path else ([], ())
        stages = training_settings(model_dir) if model_dir else []
    except ValueError as error:  # a results.json or config.json that is not sr3's (JSON errors are ValueErrors)
        raise ExportError(f"Cannot read the model card's sources: {error}. Pass --results with a results.json "
                          "written by sr3 eval or sr3 train.") from error
    settings = {"max_length": config.max_length} if config.max_length is not None else {}
    embedder = ReasoningEmbedder.from_pretrained(source, device=config.device, **settings)
    directory = export_embedder(embedder, config.output, overwrite=config.overwrite)
    start_model = stages[-1][1].get("model") if stages else (config.base_model if config.model == "base" else None)
    facts = CardFacts(name=directory.name, source=config.model, base_model=str(start_model or DEFAULT_MODEL),
                      dim=embedder.dim, max_length=embedder.max_length, prompts=prompts_of(embedder), results=rows,
                      results_source=results_path.name if results_path else None, own_labels=own, training=stages,
                      licence=licence_notice(embedder.model.config), selection=embedder.selection)
    if config.check_texts > 0:
        queries, documents = check_texts(config.check_dataset, config.check_texts)
        facts.check = {**compare_with_embedder(embedder, directory, queries, documents), "dataset": config.check_dataset}
        worst = max(facts.check["query_max_abs_diff"], facts.check["document_max_abs_diff"])
        if worst > config.tolerance:
            raise ExportError(f"The exported folder differs from the embedder by up to {worst:.2e} (tolerance "
                              f"{config.tolerance:.0e}) on {config.check_dataset} texts; the folder in {directory} "
                              "is kept for inspection. Please report this with the model and versions used.")
    (directory / "README.md").write_text(render(facts))
    return {"output": directory, "check": facts.check}
