"""Serving: ``sr3 export`` (a sentence-transformers folder, `export`, with its model card, `model_card`) and
``sr3 serve``, an embedder over HTTP.

- ``POST /v1/embeddings``: the OpenAI embeddings API (the official ``openai`` client and RAG
  frameworks work unchanged), with extras: ``input_type`` (query | document), ``reasoning`` (write an
  analysis before the query embedding) and ``return_reasoning``.
- ``POST /retrieve``: Search-R1's retriever API (``queries``, ``topk``, ``return_scores``) over a
  corpus encoded once and cached per model fingerprint.
- ``GET /health``, ``GET /v1/models``.

Modules: `schemas` (request/response models), `service` (the embedder behind one micro-batching queue),
`corpus` (the corpus index), `app` (the FastAPI app), `run` (load and serve); `export` and `model_card`.
"""
