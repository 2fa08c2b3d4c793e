"""Compare `sr3 eval` results query by query: is each model better than a baseline model, beyond noise?

    python scripts/compare_evals.py runs/eval/sft-wordnet.json runs/eval/rl-seed*.json
    python scripts/compare_evals.py --within direct runs/eval/rl-seed*.json
    python scripts/compare_evals.py --against all-MiniLM-L6-v2 runs/eval/baselines.json runs/eval/rl-seed*.json
    python scripts/compare_evals.py --within direct --model SFT+RS+RL runs/train*/results.json
    python scripts/compare_evals.py --between SFT+RS SFT+RS+RL runs/train*/results.json

The first file is the baseline. For every other file and each way of embedding (direct, reasoning, fused, auto,
turn N, turn N fused), prints nDCG@10, its difference from the baseline's same way on the same queries,
and a 95% paired bootstrap interval of that difference (queries resampled). With several files it also
pools them (the mean over files of each query's nDCG@10, e.g. over seeds) and reports mean ± std over
files. With ``--within MODE`` there is no baseline file: each model's other ways are compared with its own
MODE row (e.g. reasoning against direct of the same model, as issue 11 asks), pooled the same way over
every model of every file (baselines such as BM25 left out). With ``--against SYSTEM`` the first file's
SYSTEM row (e.g. all-MiniLM-L6-v2) is the baseline of every way of every model in the other files.
``--model LABEL`` keeps one model of files that hold several (`sr3 train`'s results.json: SFT+RS and
SFT+RS+RL). With ``--between BEFORE AFTER`` each file's AFTER model is compared with its BEFORE model,
way by way (e.g. after RL against before, over the main job's seeds). Writes the table as JSON next to the first file (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from sr3_agent.evaluation.evaluate import paired_bootstrap

KEY = "per_query_ndcg@10"


def by_model(path: Path) -> dict[str, dict[str, dict]]:
    """{model: {way of embedding ('direct', 'reasoning', 'fused', 'turn 2', 'turn 2 fused', ...): row}} of the
    rows of one results file, all of which must carry per-query scores. A baseline row without a way in
    its name (BM25, all-MiniLM-L6-v2) is its own model with one way, its name."""
    rows = json.loads(path.read_text())
    out: dict[str, dict[str, dict]] = {}
    for row in rows:
        if KEY not in row:
            raise SystemExit(f"{path}: row {row['system']!r} has no {KEY}; re-run it with this version of sr3 eval.")
        match = re.fullmatch(r"(.*) \((direct|reasoning|fused|auto|latent|turn \d+(?: fused)?)\)", row["system"])
        model, mode = match.groups() if match else (row["system"], row["system"])
        if mode in out.setdefault(model, {}):
            raise SystemExit(f"{path}: two rows are {row['system']!r}; an sr3 eval file holds each row once.")
        out[model][mode] = row
    return out


def trained_models(every: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """The models of `by_model` that are not baseline systems (which have one way, their name)."""
    return {m: rows for m, rows in every.items() if set(rows) != {m}}


def by_mode(path: Path) -> dict[str, dict]:
    """{way of embedding or baseline system: row} of a file that holds one model's rows (and baselines')."""
    every = by_model(path)
    models = trained_models(every)
    if len(models) > 1:
        raise SystemExit(f"{path}: holds rows of {len(models)} models ({', '.join(models)}); give one model per "
                         f"file to compare against a baseline file (e.g. `sr3 eval --models` of one folder), "
                         f"or compare each model with itself with --within.")
    return {mode: row for rows in every.values() for mode, row in rows.items()}


def differences(mode: str, runs: list[tuple[str, dict, dict]]) -> list[dict]:
    """Rows of ``(name, baseline row, row)`` triples: each row against its baseline and, with several,
    the pooled row (each query's mean over the runs, against its mean baseline; mean ± std over runs)."""
    table = []
    for name, base, row in runs:
        ci = paired_bootstrap(base[KEY], row[KEY])
        table.append({"model": name, "mode": mode, "ndcg@10": row["ndcg@10"], "diff": ci["mean"],
                      "low": ci["low"], "high": ci["high"], "queries": ci["queries"]})
    if len(runs) > 1:
        queries = set.intersection(*(set(base[KEY]) & set(row[KEY]) for _, base, row in runs))
        pooled_base = {q: float(np.mean([base[KEY][q] for _, base, _ in runs])) for q in queries}
        pooled = {q: float(np.mean([row[KEY][q] for _, _, row in runs])) for q in queries}
        ci = paired_bootstrap(pooled_base, pooled)
        scores = [row["ndcg@10"] for _, _, row in runs]
        table.append({"model": f"mean of {len(runs)}", "mode": mode, "ndcg@10": float(np.mean(scores)),
                      "std": float(np.std(scores, ddof=1)), "diff": ci["mean"], "low": ci["low"],
                      "high": ci["high"], "queries": ci["queries"]})
    return table


def compare(baseline: dict[str, dict], others: list[tuple[str, dict[str, dict]]]) -> list[dict]:
    """One row per (file, mode) against the baseline file's same mode and, with several files, one pooled row per mode."""
    table = []
    for mode, base in baseline.items():
        table.append({"model": "baseline", "mode": mode, "ndcg@10": base["ndcg@10"]})
        table += differences(mode, [(name, base, rows[mode]) for name, rows in others if mode in rows])
    return table


def models_of(path: Path, *labels: str) -> dict[str, dict[str, dict]]:
    """The trained models of a file, or only those named (each must be there)."""
    models = trained_models(by_model(path))
    for label in labels:
        if label not in models:
            raise SystemExit(f"{path}: no model {label!r}; it holds {sorted(models)}.")
    return {label: models[label] for label in labels} if labels else models


def within_units(paths: list[Path], model: str | None = None) -> list[tuple[str, dict[str, dict]]]:
    """One ``(name, {mode: row})`` per model in the files (only ``model`` when given), baseline systems left
    out: the file's path when it holds one model, else ``path: model``."""
    units = []
    for path in paths:
        models = models_of(path, *([model] if model else []))
        units += [(str(path) if len(models) == 1 else f"{path}: {m}", rows) for m, rows in models.items()]
    return units


def compare_between(paths: list[Path], before: str, after: str) -> list[dict]:
    """Each file's ``after`` model against its ``before`` model, way by way, pooled over files per way."""
    pairs = [(str(path), *models_of(path, before, after).values()) for path in paths]
    table = []
    for mode in dict.fromkeys(m for _, old, new in pairs for m in new if m in old):
        table += differences(f"{mode}: {after} vs {before}",
                             [(name, old[mode], new[mode]) for name, old, new in pairs if mode in old and mode in new])
    return table


def compare_within(files: list[tuple[str, dict[str, dict]]], base_mode: str) -> list[dict]:
    """Each model's modes against its own ``base_mode`` row, one row per (model, mode), pooled over models per mode."""
    for name, rows in files:
        if base_mode not in rows:
            raise SystemExit(f"{name}: no ({base_mode}) row to compare with; it has {sorted(rows)}.")
    table = []
    for mode in dict.fromkeys(m for _, rows in files for m in rows if m != base_mode):
        table += differences(f"{mode} vs {base_mode}",
                             [(name, rows[base_mode], rows[mode]) for name, rows in files if mode in rows])
    return table


def compare_against(base: dict, base_name: str, files: list[tuple[str, dict[str, dict]]]) -> list[dict]:
    """Every way of each model against one system's row (e.g. all-MiniLM-L6-v2 of another file), one row per
    (model, mode), pooled over models per mode."""
    table = []
    for mode in dict.fromkeys(m for _, rows in files for m in rows):
        table += differences(f"{mode} vs {base_name}", [(name, base, rows[mode]) for name, rows in files if mode in rows])
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| model | mode | nDCG@10 | difference | 95% interval |", "|---|---|---:|---:|---|"]
    for r in table:
        score = f"{r['ndcg@10']:.3f}" + (f" ± {r['std']:.3f}" if "std" in r else "")
        diff = f"{r['diff']:+.3f}" if "diff" in r else ""
        interval = f"[{r['low']:+.3f}, {r['high']:+.3f}]" if "low" in r else ""
        lines.append(f"| {r['model']} | {r['mode']} | {score} | {diff} | {interval} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, help="the baseline file (with --within: the first file)")
    parser.add_argument("others", type=Path, nargs="*")
    parser.add_argument("--within", metavar="MODE", default=None,
                        help="compare each model's ways with its own MODE row (e.g. direct) instead of with a baseline file")
    parser.add_argument("--against", metavar="SYSTEM", default=None,
                        help="compare every way of each model in the other files with the first file's SYSTEM row "
                             "(e.g. all-MiniLM-L6-v2 or BM25)")
    parser.add_argument("--model", metavar="LABEL", default=None,
                        help="with --within: only this model of each file (e.g. SFT+RS+RL of sr3 train's results.json)")
    parser.add_argument("--between", nargs=2, metavar=("BEFORE", "AFTER"), default=None,
                        help="compare each file's AFTER model with its BEFORE model (e.g. SFT+RS SFT+RS+RL)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if sum(option is not None for option in (args.within, args.against, args.between)) > 1:
        parser.error("give one of --within, --against and --between")
    if args.model is not None and args.within is None:
        parser.error("--model goes with --within")
    if args.against is not None:
        rows = by_mode(args.baseline)
        if args.against not in rows:
            raise SystemExit(f"{args.baseline}: no row {args.against!r} to compare with; it has {sorted(rows)}.")
        if not args.others:
            parser.error("--against: give the files of the models to compare after the file that holds SYSTEM")
        table = compare_against(rows[args.against], args.against, within_units(args.others))
        print(f"each model against {args.against} of {args.baseline}")
    elif args.within is not None:
        table = compare_within(within_units([args.baseline, *args.others], args.model), args.within)
        print(f"each model against its own ({args.within}) row")
    elif args.between is not None:
        table = compare_between([args.baseline, *args.others], *args.between)
        print(f"each file's {args.between[1]} against its {args.between[0]}")
    elif not args.others:
        parser.error("give a baseline file and at least one file to compare with it (or --within MODE)")
    else:
        table = compare(by_mode(args.baseline), [(str(p), by_mode(p)) for p in args.others])
        print(f"baseline: {args.baseline}")
    print(markdown(table))
    output = args.output or args.baseline.with_name("comparison.json")
    output.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {output}")
    return table


if __name__ == "__main__":
    main()
