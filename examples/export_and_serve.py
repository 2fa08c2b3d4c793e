"""The embedder outside sr3: export it for sentence-transformers, then serve it over HTTP and query the
server with the official ``openai`` client and with Search-R1's ``/retrieve`` request.

Run as is with the bundled SmolLM2-135M-Instruct (about a minute on 2 CPU cores: the corpus is a
small sub-corpus of semanlink); the tests run it with smaller numbers.
"""

import argparse
from pathlib import Path

import numpy as np

try:
    import httpx
    from openai import OpenAI
    from sentence_transformers import SentenceTransformer
except ImportError as error:
    raise SystemExit(f'This example needs the serving extra: pip install "sr3[serve]" ({error})') from error

from sr3_agent import ReasoningEmbedder
from sr3_agent.serving import CorpusIndex, EmbeddingService, compare_with_embedder, create_app, export_embedder
from sr3_env import load_dataset
from sr3_env.serving import ServerThread


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=8, help="semanlink test queries whose documents form the corpus")
    parser.add_argument("--docs", type=int, default=60, help="documents in the served corpus (every relevant one kept)")
    parser.add_argument("--output-dir", default="runs/example-export")
    args = parser.parse_args(argv)

    embedder = ReasoningEmbedder.from_pretrained(device="cpu", max_length=128)  # the bundled model

    # 1. Export: a folder that plain sentence-transformers loads; same vectors as the embedder.
    folder = export_embedder(embedder, Path(args.output_dir) / "st-model", overwrite=True)
    model = SentenceTransformer(str(folder), device="cpu")
    similarity = model.similarity(model.encode_query(["transformer language model"]),
                                  model.encode_document(["Attention is all you need", "Deep learning for ecology"]))
    print("sentence-transformers similarities:", np.round(similarity.numpy(), 3))
    check = compare_with_embedder(embedder, folder, ["transformer language model"], ["Attention is all you need"])
    print(f"largest difference from ReasoningEmbedder: {max(check['query_max_abs_diff'], check['document_max_abs_diff']):.1e}")

    # 2. Serve: the embedder behind an OpenAI-style /v1/embeddings and a Search-R1-style /retrieve.
    data = load_dataset("semanlink").subset(num_queries=args.queries, num_docs=args.docs, seed=0)
    service = EmbeddingService(embedder, "sr3-smollm2", index=CorpusIndex.build(embedder, data))
    with ServerThread(create_app(service)) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="not-needed")
        response = client.embeddings.create(model="sr3-smollm2", input=data.query_texts[:2],
                                            extra_body={"input_type": "query"})
        print(f"/v1/embeddings: {len(response.data)} vectors of {len(response.data[0].embedding)} numbers, "
              f"{response.usage.prompt_tokens} prompt tokens")
        reasoned = client.embeddings.create(model="sr3-smollm2", input=data.query_texts[0],
                                            extra_body={"reasoning": True, "return_reasoning": True,
                                                        "max_reasoning_tokens": 16})
        print("the model's reasoning first:", repr(reasoned.data[0].model_extra["reasoning"]))
        hits = httpx.post(f"{server.url}/retrieve", json={"queries": data.query_texts[:2], "topk": 3,
                                                          "return_scores": True}, timeout=120).json()["result"]
        for query, row in zip(data.query_texts, hits):
            print(f"/retrieve {query!r}:", [(hit["document"]["id"], round(hit["score"], 3)) for hit in row])
    return {"folder": folder, "check": check, "hits": hits, "reasoning": reasoned.data[0].model_extra["reasoning"]}


if __name__ == "__main__":
    main()
