"""`sr3 export`: the folder loads with sentence-transformers offline and its `encode_query` /
`encode_document` equal `ReasoningEmbedder`'s direct embeddings on real texts (left padding with
shifted position ids there, right padding here; truncation included); the model card says what it
should. Tiny random-weight model by default; the bundled SmolLM2 in a slow test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sr3_agent.cli import main
from sr3_agent.serving.export import check_texts, compare_with_embedder, export_embedder

TOLERANCE = 1e-4


@pytest.fixture
def offline(monkeypatch):
    """No network, as the issue asks: loading must not try the hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def real_texts(count: int = 6) -> tuple[list[str], list[str]]:
    """Queries and documents of both bundled datasets; semanlink's longest document is cut at 96 tokens."""
    queries, documents = [], []
    for name in ("semanlink", "wordnet-revdict"):
        q, d = check_texts(name, count)
        queries += q
        documents += d
    return queries, documents


def test_exported_folder_equals_the_embedder(tiny_embedder, tmp_path, offline):
    from sentence_transformers import SentenceTransformer

    folder = export_embedder(tiny_embedder, tmp_path / "st")
    model = SentenceTransformer(str(folder), device="cpu")
    queries, documents = real_texts()
    assert max(len(p) for p in tiny_embedder.prompt_ids(documents, tiny_embedder.prompts.document)) == tiny_embedder.max_length
    for ours, theirs in ((tiny_embedder.encode_queries(queries), model.encode_query(queries, batch_size=5)),
                         (tiny_embedder.encode_documents(documents), model.encode_document(documents, batch_size=5))):
        assert theirs.shape == ours.shape == (len(ours), tiny_embedder.dim)
        assert np.abs(theirs - ours).max() <= TOLERANCE
    one_at_a_time = np.stack([model.encode_document([text])[0] for text in documents[:4]])
    assert np.abs(one_at_a_time - tiny_embedder.encode_documents(documents[:4])).max() <= TOLERANCE  # batch-independent
    assert model.max_seq_length == tiny_embedder.max_length + 1
    assert model.prompts == {"query": tiny_embedder.prompts.query, "document": tiny_embedder.prompts.document}


def test_the_tokens_are_the_embedders(tiny_embedder, tmp_path, offline):
    """The same token ids as `direct_batch`: system prompt, chat template, embed token last."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(export_embedder(tiny_embedder, tmp_path / "st")), device="cpu")
    queries, documents = real_texts(2)
    for texts, prompt in ((queries, tiny_embedder.prompts.query), (documents, tiny_embedder.prompts.document)):
        features = model[0].preprocess(texts, prompt=prompt)
        ids, mask = tiny_embedder.direct_batch(texts, prompt)
        for row in range(len(texts)):
            theirs = features["input_ids"][row][features["attention_mask"][row].bool()].tolist()
            assert theirs == ids[row][mask[row].bool()].tolist()
            assert theirs[-1] == tiny_embedder.embed_token_id


def test_the_folder_still_loads_in_sr3(tiny_embedder, tmp_path):
    from sr3_agent.model.embedder import ReasoningEmbedder

    folder = export_embedder(tiny_embedder, tmp_path / "st")
    again = ReasoningEmbedder.from_pretrained(folder, device="cpu")
    texts = ["a word for a large body of water"]
    assert np.abs(again.encode_queries(texts) - tiny_embedder.encode_queries(texts)).max() <= TOLERANCE


def test_compare_reports_the_differences(tiny_embedder, tmp_path, offline):
    folder = export_embedder(tiny_embedder, tmp_path / "st")
    report = compare_with_embedder(tiny_embedder, folder, ["ocean"], ["sea\nsalt water"])
    assert report["query_texts"] == report["document_texts"] == 1
    assert report["query_max_abs_diff"] <= TOLERANCE and report["document_min_cosine"] > 0.9999


def test_an_export_is_an_environments_document_encoder(tiny_embedder, tmp_path, offline):
    """``make_encoder(folder)``: the export's vectors are the embedder's, documents and queries alike, and
    its cache key changes when the folder is written again."""
    import os

    from sr3_env.encoders import SentenceTransformerEncoder, make_encoder
    from sr3_env.errors import EncoderError

    queries, documents = real_texts()
    folder = export_embedder(tiny_embedder, tmp_path / "st")
    encoder = make_encoder(str(folder))
    assert isinstance(encoder, SentenceTransformerEncoder) and encoder.frozen and encoder.dim == tiny_embedder.dim
    np.testing.assert_allclose(encoder.encode_documents(documents), tiny_embedder.encode_documents(documents), atol=1e-4)
    np.testing.assert_allclose(encoder.encode_queries(queries), tiny_embedder.encode_queries(queries), atol=1e-4)
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert make_encoder(folder).name != encoder.name
    with pytest.raises(EncoderError, match="no modules.json"):
        make_encoder(str(tmp_path))


def sr3_train_layout(tiny_embedder, root: Path) -> Path:
    """A folder as `sr3 train` leaves it: sft/final (the model), sft/config.json, results.json."""
    final = tiny_embedder.save_pretrained(root / "sft" / "final")
    (root / "sft" / "config.json").write_text(json.dumps({"model": None, "dataset": "wordnet-revdict", "steps": 30,
                                                          "batch_size": 16, "learning_rate": 5e-5}))
    rows = [{"system": "SFT (direct)", "dataset": "wordnet-revdict", "queries": 200, "docs": 2000, "ndcg@10": 0.61,
             "recall@100": 0.915, "mrr@10": 0.568, "note": "a sub-corpus"},
            {"system": "SFT (auto)", "dataset": "wordnet-revdict", "queries": 200, "docs": 2000, "ndcg@10": 0.612,
             "recall@100": 0.915, "mrr@10": 0.57, "reasoned_share": 0.045, "note": "a sub-corpus"},
            {"system": "BM25", "dataset": "wordnet-revdict", "queries": 200, "docs": 2000, "ndcg@10": 0.291,
             "recall@100": 0.39, "mrr@10": 0.267, "note": "a sub-corpus"}]
    (root / "results.json").write_text(json.dumps(rows))
    return final


def test_sr3_export_command_writes_folder_and_card(tiny_embedder, tmp_path, capsys, offline):
    final = sr3_train_layout(tiny_embedder, tmp_path / "run")
    out = tmp_path / "exported"
    assert main(["export", "--model", str(final), "--output", str(out), "--check-texts", "3"]) == 0
    printed = capsys.readouterr().out
    assert "largest absolute difference" in printed and "SentenceTransformer(" in printed
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers")
    assert "| **SFT (direct)** | wordnet-revdict | 200 | 2000 | 0.610 | 0.915 | 0.568 |" in card  # its own row, bold
    assert "| BM25 |" in card and "Stage `sft`" in card and "| learning_rate | `5e-05` |" in card
    assert "| **SFT (auto)** | wordnet-revdict | 200 | 2000 | 0.612 | 0.915 | 0.570 | 0.04 |" in card  # auto, its share
    assert "reasoned |" in card and "| BM25 | wordnet-revdict | 200 | 2000 | 0.291 | 0.390 | 0.267 |  |" in card
    assert tiny_embedder.prompts.query in card and "reasoning=True" in card and "## Limits" in card
    assert "encode_queries_auto" in card and '"auto"' in card
    assert "| 3 query texts (semanlink) |" in card
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "sr3_embedder.json"):
        assert (out / name).is_file()


def test_sr3_export_refuses_what_it_cannot_do(tiny_embedder, tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    final = tiny_embedder.save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit) as stop:
        main(["export", "--model", str(final), "--output", str(occupied), "--check-texts", "0"])
    assert stop.value.code == 2 and "not empty" in capsys.readouterr().err
    assert (occupied / "keep.txt").is_file()
    with pytest.raises(SystemExit):
        main(["export", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "x")])
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"not": "rows"}')
    with pytest.raises(SystemExit):
        main(["export", "--model", str(final), "--output", str(tmp_path / "y"), "--results", str(tmp_path / "bad.json")])
    assert "not a results.json of sr3 eval" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--check-texts", "-1"])
    assert "check_texts must be >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_bundled_model_export_equals_the_embedder(tmp_path, offline, capsys):
    """The issue's check on the real model: `sr3 export --model base`, 16 + 16 real texts."""
    out = tmp_path / "base"
    assert main(["export", "--model", "base", "--output", str(out)]) == 0
    card = (out / "README.md").read_text()
    line = next(row for row in card.splitlines() if row.startswith("| 16 document texts"))
    assert float(line.split("|")[2]) <= TOLERANCE


def test_a_gemma_models_card_carries_the_gemma_terms_notice(_family_embedders):
    from sr3_agent.serving.export import licence_notice

    assert "Gemma Terms of Use" in licence_notice(_family_embedders("gemma3-sliding").model.config)
    assert licence_notice(_family_embedders("llama").model.config) is None
