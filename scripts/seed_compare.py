"""Paired differences between the ways of embedding of run folders KIND-SEED (`sr3 eval` files OUT/DATASET-SEED.json
whose models are OUT/KIND-SEED/...; with several folders, their files of a seed are read as one), per seed and pooled over the seeds (each query's nDCG@10 averaged over the
seeds, then a 95% paired bootstrap over the queries). Each ``--pair BASE SYSTEM`` (KIND:WAY each) is one row per
dataset: SYSTEM - BASE. The way ``chosen`` is, per seed, the way the model folder records as chosen on its dev split.

    python scripts/seed_compare.py runs/latent --seeds 0 1 2 --datasets wordnet-revdict semanlink \
        --pair sft:direct latent:latent --pair latent:reasoning latent:latent

Prints a Markdown table and writes it as OUT/compare.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from sr3_agent.evaluation.evaluate import paired_bootstrap

KEY = "per_query_ndcg@10"


def rows_of(path: Path, seed: str) -> dict[tuple[str, str], dict[str, float]]:
    """{(kind, way): per-query scores} of an `sr3 eval` file; the kind is its model's run folder KIND-SEED."""
    found = {}
    for row in json.loads(path.read_text()):
        label, _, way = str(row["system"]).rpartition(" (")
        run = next((p for p in Path(label).parts if re.fullmatch(rf"[\w.]+-{seed}", p)), None)
        if run is not None and KEY in row:
            found[(run.rsplit("-", 1)[0], way.rstrip(")"))] = row[KEY]
            if way.rstrip(")") == chosen_way(Path(label)):  # the way its training chose on dev, also as KIND:chosen
                found[(run.rsplit("-", 1)[0], "chosen")] = row[KEY]
    return found


def chosen_way(model: Path) -> str | None:
    """The query way a model folder records as chosen on its dev split (`selection` in sr3_embedder.json), if any."""
    settings = model / "sr3_embedder.json"
    return (json.loads(settings.read_text()).get("selection") or {}).get("query_way") if settings.is_file() else None


def scores_of(run: dict[tuple[str, str], dict[str, float]], side: tuple[str, str],
              files: list[Path]) -> dict[str, float]:
    """The per-query scores of ``side`` (kind, way) in one seed's rows, read from ``files``."""
    if side not in run:
        raise SystemExit(f"{' / '.join(map(str, files))} has no {side[0]}-SEED/... ({side[1]}) row with per-query scores; its rows: "
                         f"{sorted(':'.join(key) for key in run)}.")
    return run[side]


def pooled(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each query's mean over the seeds (the queries every seed scored)."""
    shared = set.intersection(*(set(s) for s in per_seed))
    return {q: float(np.mean([s[q] for s in per_seed])) for q in shared}


def kind_way(text: str) -> tuple[str, str]:
    kind, sep, way = text.rpartition(":")
    if not sep or not kind or not way:
        raise argparse.ArgumentTypeError(f"expected KIND:WAY (e.g. sft:direct), got {text!r}")
    return kind, way


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="+", help="folders of DATASET-SEED.json files (their rows merged)")
    parser.add_argument("--seeds", nargs="+", required=True)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--pair", nargs=2, type=kind_way, action="append", required=True, metavar=("BASE", "SYSTEM"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    table = []
    for dataset in args.datasets:
        paths = [[folder / f"{dataset}-{seed}.json" for folder in args.out] for seed in args.seeds]
        runs = [{key: value for path in group if path.is_file() for key, value in rows_of(path, seed).items()}
                for group, seed in zip(paths, args.seeds)]
        for base, system in args.pair:
            a, b = ([scores_of(run, side, files) for run, files in zip(runs, paths)] for side in (base, system))
            table.append({"dataset": dataset, "baseline": " ".join(base), "system": " ".join(system),
                          "baseline_ndcg": [float(np.mean(list(s.values()))) for s in a],
                          "system_ndcg": [float(np.mean(list(s.values()))) for s in b],
                          "per_seed": [paired_bootstrap(x, y) for x, y in zip(a, b)],
                          "pooled": paired_bootstrap(pooled(a), pooled(b))})
    print(f"| dataset | system - baseline | nDCG@10 (baseline, system; seed mean) | per seed ({', '.join(args.seeds)}) "
          "| pooled [95% interval] |")
    print("|---|---|---|---|---|")
    for row in table:
        seeds = "; ".join(f"{r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" for r in row["per_seed"])
        p = row["pooled"]
        print(f"| {row['dataset']} ({p['queries']} queries) | {row['system']} - {row['baseline']} | "
              f"{np.mean(row['baseline_ndcg']):.3f}, {np.mean(row['system_ndcg']):.3f} | {seeds} | "
              f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}] |")
    (args.output or args.out[0] / "compare.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
