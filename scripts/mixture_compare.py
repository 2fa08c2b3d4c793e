"""The paired differences of `scripts/mixture_check.sh`'s runs: the mixture's model against the WordNet-only model
(direct and auto, in domain and zero-shot), and each model's auto against its own direct, per seed and pooled over
the seeds (each query's nDCG@10 averaged over the seeds, then a 95% paired bootstrap over the queries).

    python scripts/mixture_compare.py runs/mixture 0 1 2

Prints a Markdown table and writes it as OUT/compare.json.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from sr3_agent.evaluation.evaluate import paired_bootstrap

KEY = "per_query_ndcg@10"


def rows_of(path: Path, dataset: str) -> dict[str, dict]:
    """{(model, way): per-query scores} of a results file's rows on ``dataset``; the model is the run folder
    (wn-SEED or mix-SEED) for `sr3 eval`'s rows and "run" for `sr3 train`'s final (RL) model."""
    found = {}
    for row in json.loads(path.read_text()):
        system, name = str(row["system"]), row.get("dataset")
        if str(name).split("[")[0] != dataset or KEY not in row or " (" not in system:  # "name[2000 docs]": a sub-corpus
            continue
        label, way = system.rsplit(" (", 1)
        run = "run" if label.endswith("+RL") else next((p for p in Path(label).parts if re.fullmatch(r"(wn|mix)-\d+", p)), None)
        if run is not None and not (label.endswith("+RS") or label == "SFT"):
            found[(run.split("-")[0], way.rstrip(")"))] = {"scores": row[KEY], "reasoned": row.get("reasoned_share")}
    return found


def pooled(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each query's mean over the seeds (the queries every seed scored)."""
    shared = set.intersection(*(set(s) for s in per_seed))
    return {q: float(np.mean([s[q] for s in per_seed])) for q in shared}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("seeds", nargs="+")
    args = parser.parse_args(argv)
    checks = [  # (where, dataset, files of a seed, (model, way) of the baseline, (model, way) compared)
        ("in domain", "wordnet-revdict", lambda s: (f"wn-{s}/results.json", f"mix-{s}/results.json"), ("wn", "direct"), ("mix", "direct")),
        ("in domain", "wordnet-revdict", lambda s: (f"wn-{s}/results.json",) * 2, ("wn", "direct"), ("wn", "auto")),
        ("in domain", "wordnet-revdict", lambda s: (f"mix-{s}/results.json",) * 2, ("mix", "direct"), ("mix", "auto")),
    ]
    for data in ("semanlink", "python-docstrings"):
        files = lambda s, data=data: (f"{data}-{s}.json",) * 2  # noqa: E731
        checks += [("zero-shot" if data == "semanlink" else "docstrings' test", data, files, ("wn", "direct"), ("mix", "direct")),
                   ("zero-shot" if data == "semanlink" else "docstrings' test", data, files, ("wn", "direct"), ("wn", "auto")),
                   ("zero-shot" if data == "semanlink" else "docstrings' test", data, files, ("mix", "direct"), ("mix", "auto"))]
    table = []
    for where, dataset, files, base, system in checks:
        sides = {"base": [], "system": [], "base_reasoned": [], "system_reasoned": []}
        for seed in args.seeds:
            first, second = (args.out / name for name in files(seed))
            a, b = rows_of(first, dataset), rows_of(second, dataset)
            key = lambda side: ("run", side[1]) if first.name == "results.json" else side  # noqa: E731
            sides["base"].append(a[key(base)]["scores"])
            sides["system"].append(b[key(system)]["scores"])
            sides["system_reasoned"].append(b[key(system)]["reasoned"])
        per_seed = [paired_bootstrap(x, y) for x, y in zip(sides["base"], sides["system"])]
        together = paired_bootstrap(pooled(sides["base"]), pooled(sides["system"]))
        reasoned = [r for r in sides["system_reasoned"] if r is not None]
        table.append({"where": where, "dataset": dataset, "baseline": " ".join(base), "system": " ".join(system),
                      "per_seed": per_seed, "pooled": together, "reasoned": reasoned,
                      "baseline_ndcg": float(np.mean([np.mean(list(s.values())) for s in sides["base"]])),
                      "system_ndcg": float(np.mean([np.mean(list(s.values())) for s in sides["system"]]))})
    print(f"| where | dataset | system - baseline | nDCG@10 (baseline, system) | per seed ({', '.join(args.seeds)}) | "
          "pooled [95% interval] | reasoned |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        seeds = "; ".join(f"{r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" for r in row["per_seed"])
        p = row["pooled"]
        share = ", ".join(f"{r:.1%}" for r in row["reasoned"])
        print(f"| {row['where']} | {row['dataset']} ({p['queries']} queries) | {row['system']} - {row['baseline']} | "
              f"{row['baseline_ndcg']:.3f}, {row['system_ndcg']:.3f} | {seeds} | {p['mean']:+.3f} [{p['low']:+.3f}, "
              f"{p['high']:+.3f}] | {share} |")
    (args.out / "compare.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
