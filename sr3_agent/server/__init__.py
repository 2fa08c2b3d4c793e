"""``sr3 serve``: an embedder over HTTP.

- ``POST /v1/embeddings``: the OpenAI embeddings API (the official ``openai`` client and RAG
  frameworks work unchanged), with extras: ``input_type`` (query | document), ``reasoning`` (write an
  analysis before the query embedding) and ``return_reasoning``.
- ``POST /retrieve``: Search-R1's retriever API (``queries``, ``topk``, ``return_scores``) over a
  corpus encoded once and cached per model fingerprint.
- ``GET /health``, ``GET /v1/models``.

Modules: `schemas` (request/response models), `batcher` (texts of concurrent requests batched into
one forward pass), `corpus` (the corpus index), `app` (the FastAPI app), `run` (load and serve).
"""
