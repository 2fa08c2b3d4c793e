"""Compare `sr3 eval` results query by query: is each model better than a baseline model, beyond noise?

    python scripts/compare_evals.py runs/eval/sft-wordnet.json runs/eval/rl-seed*.json

The first file is the baseline. For every other file and each way of embedding (direct, reasoning, fused),
prints nDCG@10, its difference from the baseline's same way on the same queries, and a 95% paired
bootstrap interval of that difference (queries resampled). With several files it also pools them
(the mean over files of each query's nDCG@10, e.g. over seeds) and reports mean ± std over files.
Writes the table as JSON next to the first file (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from sr3_agent.evaluate import paired_bootstrap

KEY = "per_query_ndcg@10"


def by_mode(path: Path) -> dict[str, dict]:
    """{'direct' | 'reasoning' | 'fused' | system name: row} of the rows of one results file that carry per-query scores."""
    rows = json.loads(path.read_text())
    out = {}
    for row in rows:
        if KEY not in row:
            raise SystemExit(f"{path}: row {row['system']!r} has no {KEY}; re-run it with this version of sr3 eval.")
        match = re.search(r"\((direct|reasoning|fused)\)$", row["system"])
        out[match.group(1) if match else row["system"]] = row
    return out


def compare(baseline: dict[str, dict], others: list[tuple[str, dict[str, dict]]]) -> list[dict]:
    """One row per (file, mode) and, with several files, one pooled row per mode."""
    table = []
    for mode, base in baseline.items():
        runs = [(name, rows[mode]) for name, rows in others if mode in rows]
        table.append({"model": "baseline", "mode": mode, "ndcg@10": base["ndcg@10"]})
        for name, row in runs:
            ci = paired_bootstrap(base[KEY], row[KEY])
            table.append({"model": name, "mode": mode, "ndcg@10": row["ndcg@10"], "diff": ci["mean"],
                          "low": ci["low"], "high": ci["high"], "queries": ci["queries"]})
        if len(runs) > 1:
            queries = set.intersection(*(set(r[KEY]) for _, r in runs))
            pooled = {q: float(np.mean([r[KEY][q] for _, r in runs])) for q in queries}
            ci = paired_bootstrap(base[KEY], pooled)
            scores = [r["ndcg@10"] for _, r in runs]
            table.append({"model": f"mean of {len(runs)}", "mode": mode, "ndcg@10": float(np.mean(scores)),
                          "std": float(np.std(scores, ddof=1)), "diff": ci["mean"], "low": ci["low"],
                          "high": ci["high"], "queries": ci["queries"]})
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| model | mode | nDCG@10 | difference from baseline | 95% interval |", "|---|---|---:|---:|---|"]
    for r in table:
        score = f"{r['ndcg@10']:.3f}" + (f" ± {r['std']:.3f}" if "std" in r else "")
        diff = f"{r['diff']:+.3f}" if "diff" in r else ""
        interval = f"[{r['low']:+.3f}, {r['high']:+.3f}]" if "low" in r else ""
        lines.append(f"| {r['model']} | {r['mode']} | {score} | {diff} | {interval} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("others", type=Path, nargs="+")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    table = compare(by_mode(args.baseline), [(str(p), by_mode(p)) for p in args.others])
    print(f"baseline: {args.baseline}")
    print(markdown(table))
    output = args.output or args.baseline.with_name("comparison.json")
    output.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {output}")
    return table


if __name__ == "__main__":
    main()
