"""Your own (question, answer) pairs as a BEIR folder that sr3 trains and evaluates on.

Each distinct answer becomes a document, each question a query whose one relevant document (grade 1) is
its answer. The questions are split into train, dev and test queries (disjoint; the split depends on the
question's text alone, so adding pairs later moves no question to another split), over one shared corpus:

    python examples/own_data.py --pairs faq.csv --output-dir my-faq   # a CSV with columns question,answer
    sr3 train --dataset my-faq                                          # or sr3 sft / sr3 rl / sr3 eval

Without ``--pairs`` it writes a folder from a dozen built-in pairs. It then loads every split with sr3's
loader (which checks the files and names the line of anything malformed) and plays one episode of
RetrievalEmbed-v0 on the test split. A dozen pairs show the format; training wants thousands.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import gymnasium as gym

from sr3_env import load_dataset

PAIRS = [
    ("How do I reset my password?", "Open Settings, choose Security, then Reset password; a link is emailed to you."),
    ("I forgot my password", "Open Settings, choose Security, then Reset password; a link is emailed to you."),
    ("Can I change the email address of my account?", "Yes: Settings, Account, Email. We confirm the new address first."),
    ("How do I delete my account?", "Settings, Account, Delete account. Your data is erased after 30 days."),
    ("Which payment methods do you accept?", "Credit cards, PayPal and bank transfer within the EU."),
    ("Can I pay by bank transfer?", "Credit cards, PayPal and bank transfer within the EU."),
    ("How do I get an invoice?", "Invoices are under Billing, History; each one can be downloaded as a PDF."),
    ("Do you ship outside Europe?", "We ship to the EU, the UK, Norway and Switzerland only."),
    ("How long does delivery take?", "Orders arrive in 2 to 5 working days; express delivery takes one."),
    ("Can I return an item?", "Returns are free within 30 days: print the label from Orders, Return."),
    ("Is my data shared with third parties?", "No. We share data only with the payment provider, to process payments."),
    ("How do I contact support?", "Write to the address on the Contact page; we answer within one working day."),
]


def split_of(question: str, test_fraction: float, dev_fraction: float) -> str:
    """``"test"``, ``"dev"`` or ``"train"``, from the SHA-1 of the question: stable as pairs are added."""
    share = int(hashlib.sha1(question.encode("utf-8")).hexdigest()[:8], 16) / 0x1_0000_0000
    return "test" if share < test_fraction else "dev" if share < test_fraction + dev_fraction else "train"


def write_beir(pairs: Iterable[tuple[str, str]], folder: str | Path, *, test_fraction: float = 0.25,
               dev_fraction: float = 0.15) -> Path:
    """Write ``pairs`` as a BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{train,dev,test}.tsv``."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    doc_ids: dict[str, str] = {}  # answer text -> document id: questions that share an answer share its document
    query_ids: dict[str, str] = {}
    qrels: dict[str, list[tuple[str, str]]] = {"train": [], "dev": [], "test": []}
    for question, answer in pairs:
        question, answer = question.strip(), answer.strip()
        if not question or not answer:
            raise ValueError(f"An empty question or answer: {(question, answer)!r}.")
        if question in query_ids:
            continue  # a question asked twice is one query
        doc_id = doc_ids.setdefault(answer, f"a{len(doc_ids)}")
        query_ids[question] = f"q{len(query_ids)}"
        qrels[split_of(question, test_fraction, dev_fraction)].append((query_ids[question], doc_id))
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for answer, doc_id in doc_ids.items():
            corpus.write(json.dumps({"_id": doc_id, "title": "", "text": answer}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as queries:
        for question, query_id in query_ids.items():
            queries.write(json.dumps({"_id": query_id, "text": question}, ensure_ascii=False) + "\n")
    for split, rows in qrels.items():
        with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["query-id", "corpus-id", "score"])  # the header line is required
            writer.writerows((query_id, doc_id, 1) for query_id, doc_id in rows)
    return folder


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(question, answer) rows of a CSV file with the columns ``question`` and ``answer``."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"question", "answer"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: the CSV needs the columns question and answer; {sorted(missing)} missing "
                             f"(it has {reader.fieldnames}).")
        return [(row["question"], row["answer"]) for row in reader]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", help="CSV file with the columns question,answer (default: a dozen built-in pairs)")
    parser.add_argument("--output-dir", default="runs/own-data", help="the BEIR folder to write")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of the questions kept for testing")
    parser.add_argument("--dev-fraction", type=float, default=0.15, help="share kept for checkpoint selection")
    parser.add_argument("--encoder", default="minilm", help="the environment's document encoder: minilm or hashing")
    args = parser.parse_args(argv)

    pairs = read_pairs(args.pairs) if args.pairs else PAIRS
    folder = write_beir(pairs, args.output_dir, test_fraction=args.test_fraction, dev_fraction=args.dev_fraction)
    splits = {split: load_dataset(folder, split=split) for split in ("train", "dev", "test")}
    print(f"{folder}: {len(splits['test'].doc_ids)} documents; "
          + ", ".join(f"{len(data.query_ids)} {split} queries" for split, data in splits.items()))

    env = gym.make("RetrievalEmbed-v0", dataset=str(folder), split="test", encoder=args.encoder, reward="ndcg@10")
    query, _ = env.reset(seed=0)
    action = env.unwrapped.encoder.encode_documents([query])[0]  # the frozen encoder as the policy
    _, reward, _, _, info = env.step(action)
    print(f"test query {query!r}: its answer ranked {info['rank']}, nDCG@10 {reward:.3f}")
    print(f"Train on it: sr3 train --dataset {folder}")
    return {"folder": folder, "splits": splits, "reward": reward}


if __name__ == "__main__":
    main()
