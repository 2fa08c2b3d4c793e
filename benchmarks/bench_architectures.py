"""Fast paths against the plain path, family by family: the largest difference of each kind of vector.

For each tiny random-weight family of `sr3_agent.model.tiny_models` (the bundled SmolLM2 tokenizer, real
wordnet-revdict texts of 1 to 96 prompt tokens), the embedder with prefix reuse against the same
embedder with ``reuse_prefix = False``: documents, direct queries, and reasoning embeddings (greedy,
8 tokens). ``--unchecked`` also runs the shared-prefix layout without the attention-window check
(`sr3_agent.model.kvcache.layout_is_exact` forced true): what a sliding-window model gave before the check.

    python benchmarks/bench_architectures.py [--unchecked] [--output benchmarks/results/bench_architectures.json]

Prints a table and writes JSON. The tests (`tests/test_prefix_reuse.py`) hold every path within 1e-4.
"""

from __future__ import annotations

import argparse
import copy
from contextlib import contextmanager
from unittest import mock

import numpy as np

from _common import environment, write_json
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.model.kvcache import attention_window
from sr3_agent.model.tiny_models import TINY_FAMILIES, tiny_model, tiny_tokenizer
from sr3_env import load_dataset


@contextmanager
def window_check(enabled: bool):
    if enabled:
        yield
    else:
        with mock.patch("sr3_agent.model.prefix_reuse.layout_is_exact", lambda *args, **kwargs: True):
            yield


def differences(embedder: ReasoningEmbedder, documents: list[str], queries: list[str], checked: bool) -> dict[str, float]:
    plain = copy.copy(embedder)
    plain.reuse_prefix = False
    with window_check(checked):
        fast = {"documents": embedder.encode_documents(documents), "queries": embedder.encode_queries(queries),
                "reasoning": embedder.encode_queries(queries, reasoning=True, max_new_tokens=8)}
    slow = {"documents": plain.encode_documents(documents), "queries": plain.encode_queries(queries),
            "reasoning": plain.encode_queries(queries, reasoning=True, max_new_tokens=8)}
    return {kind: float(np.abs(fast[kind] - slow[kind]).max()) for kind in fast}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unchecked", action="store_true", help="also run the layout without the window check")
    parser.add_argument("--output", default="benchmarks/results/bench_architectures.json")
    args = parser.parse_args(argv)
    data = load_dataset("wordnet-revdict")
    documents = ["x", *data.documents[:10], " ".join(data.documents[:10]) * 3]
    queries = list(data.query_texts[:8])
    tokenizer = tiny_tokenizer()
    rows = []
    for family in sorted(TINY_FAMILIES):
        embedder = ReasoningEmbedder(tiny_model(family, tokenizer), tokenizer, max_length=96, batch_size=5,
                                     name=f"tiny-{family}")
        window = attention_window(embedder.model.config)
        for checked in ([True, False] if args.unchecked else [True]):
            rows.append({"family": family, "window": window, "window_check": checked,
                         **differences(embedder, documents, queries, checked)})
    print("| family | window | window check | documents | direct queries | reasoning |")
    print("|---|---:|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['family']} | {row['window'] or '-'} | {'on' if row['window_check'] else 'off'} | "
              f"{row['documents']:.1e} | {row['queries']:.1e} | {row['reasoning']:.1e} |")
    results = {"environment": environment(), "rows": rows}
    write_json(args.output, results)
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
