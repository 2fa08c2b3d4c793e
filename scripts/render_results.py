"""Render the results tables of README.md and docs/results*.md from the committed JSON that measured them.

Every table of the results pages, and every number quoted in their prose, sits between markers and is
written by this script from the files the measuring commands wrote (docs/results/, benchmarks/results/):

    <!-- table: NAME -->             a whole table (NAME below, in TABLES)
    ...
    <!-- /table -->
    <!-- value: NAME | ARG | ... -->0.123<!-- /value -->     one number or phrase inside a sentence

    python scripts/render_results.py           rewrite what lies between the markers
    python scripts/render_results.py --check   change nothing; exit 1 naming each table or value that differs

tests/test_results_page.py runs the check, so a page that disagrees with its JSON fails the tests.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/results.md", "docs/results-archive.md")
MINUS = "\u2212"
TABLE = re.compile(r"<!-- table: (?P<name>[^>]*?) -->\n(?P<body>.*?)\n?<!-- /table -->", re.S)
VALUE = re.compile(r"<!-- value: (?P<name>[^>]*?) -->(?P<body>.*?)<!-- /value -->", re.S)
STAGE_FOLDER = {"SFT": "sft", "SFT+RS": "rs", "SFT+RS+RL": "rl"}  # sr3 train's labels and its stage folders
STAGE_NAME = {"SFT": "after SFT", "SFT+RS": "after rejection sampling", "SFT+RS+RL": "after RL"}
MAIN = "docs/results/main-job"
TWO_TURN = "docs/results/full-scale/two-turn-120-seeds"
SEMANLINK_BASELINES = "docs/results/eval-sft-direct-only.json"  # BM25 and MiniLM on semanlink, whole


# ------------------------------------------------------------------------------------------------ reading
@lru_cache(maxsize=None)
def load(path: str) -> Any:
    return json.loads((ROOT / path).read_text())


def rows(path: str) -> dict[str, dict]:
    """An `sr3 eval` / `sr3 train` results file: its rows by system name."""
    return {row["system"]: row for row in load(path)}


def row(path: str, system: str) -> dict:
    found = rows(path)
    if system not in found:
        raise KeyError(f"{path} has no system {system!r} (it has {sorted(found)})")
    return found[system]


def comparison(path: str, model: str, mode: str) -> dict:
    """One line of `scripts/compare_evals.py`'s output: the first whose model ends with MODEL."""
    for line in load(path):
        if line["model"].endswith(model) and line["mode"] == mode:
            return line
    raise KeyError(f"{path} has no comparison {model!r} / {mode!r}")


def seed_comparison(path: str, dataset: str, baseline: str, system: str) -> dict:
    """One entry of `scripts/seed_compare.py` / `mixture_compare.py`'s compare.json."""
    for entry in load(path):
        if (entry["dataset"], entry["baseline"], entry["system"]) == (dataset, baseline, system):
            return entry
    raise KeyError(f"{path} has no comparison {dataset!r}: {system!r} against {baseline!r}")


def paired(path: str, baseline: str, system: str) -> dict:
    """SYSTEM − BASELINE over the queries both score, with sr3's own paired bootstrap (seeded: reproducible)."""
    from sr3_agent.evaluation.evaluate import paired_bootstrap

    return paired_bootstrap(row(path, baseline)["per_query_ndcg@10"], row(path, system)["per_query_ndcg@10"])


# --------------------------------------------------------------------------------------------- formatting
def f3(x: float) -> str:
    return f"{x:.3f}".replace("-", MINUS)


def signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", MINUS)


def difference(mean: float, low: float, high: float) -> str:
    return f"{signed(mean)} [{signed(low)}, {signed(high)}]"


def diff_of(entry: dict) -> str:
    """A difference with its 95% interval, from either script's keys (`diff` or `mean`)."""
    return difference(entry["diff"] if "diff" in entry else entry["mean"], entry["low"], entry["high"])


def count(n: int) -> str:
    return f"{n:,}"


def optional(x: float | None, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def minutes_seconds(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s"


def markdown(header: list[str], body: list[list[str]], right: set[int] = frozenset()) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += [re.sub(r"\|  (?=\|)", "| ", "| " + " | ".join(cells) + " |") for cells in body]  # an empty cell: "| |"
    return "\n".join(lines)


def token_rate(r: dict) -> float | None:
    if "embed_token_rate" in r:
        return r["embed_token_rate"]
    if "missing_embed_token_rate" in r:  # older rows said how often the token was missing
        return 1.0 - r["missing_embed_token_rate"]
    return None


def where(r: dict) -> str:
    return f"{r['dataset'].split('[')[0]} {r['split']}, {count(r['queries'])} queries, {count(r['docs'])} documents"


# ------------------------------------------------------------------------------------ the 30-minute run
def main_job_table() -> str:
    results = load(f"{MAIN}/results.json")
    body = [[r["system"], f3(r["ndcg@10"]), f3(r["recall@100"]), f3(r["mrr@10"]), optional(token_rate(r), 2),
             optional(r.get("reasoning_length"), 1), optional(r.get("reasoned_share"), 2)] for r in results]
    return markdown([f"system ({where(results[0])})", "nDCG@10", "Recall@100", "MRR@10", "token rate",
                     "reasoning tokens", "reasoned"], body, right={1, 2, 3, 4, 5, 6})


def readme_main_job_table() -> str:
    results = load(f"{MAIN}/results.json")
    body = []
    for r in results:
        label = r["system"]
        if " (" in label:
            stage, way = label[:-1].split(" (")
            label = f"{STAGE_NAME[stage]}, {way}"
        body.append([label, f3(r["ndcg@10"]), f3(r["recall@100"]), optional(token_rate(r), 2),
                     optional(r.get("reasoned_share"), 2)])
    first = results[0]
    header = (f"model, query embedding ({first['dataset'].split('[')[0]} {first['split']}, {count(first['queries'])} "
              f"queries, {count(first['docs'])}-document sub-corpus)")
    return markdown([header, "nDCG@10", "Recall@100", "token rate", "reasoned"], body, right={1, 2, 3, 4})


RUN_PAIRS = [  # (what it answers, baseline, system)
    ("RL teaches the reasoning", "SFT+RS (reasoning)", "SFT+RS+RL (reasoning)"),
    ("after RL, reasoning against direct", "SFT+RS+RL (direct)", "SFT+RS+RL (reasoning)"),
    ("after RL, fused against direct", "SFT+RS+RL (direct)", "SFT+RS+RL (fused)"),
    ("after RL, auto against direct", "SFT+RS+RL (direct)", "SFT+RS+RL (auto)"),
    ("what rejection sampling costs the direct embedding", "SFT (direct)", "SFT+RS (direct)"),
    ("what RL costs the direct embedding", "SFT+RS (direct)", "SFT+RS+RL (direct)"),
    ("what the final model's direct embedding lost", "SFT (direct)", "SFT+RS+RL (direct)"),
]


def run_differences(folder: str = MAIN) -> str:
    """The paired test differences of an `sr3 train` run folder (results.json, selected.json): what each stage did,
    and the model and way the run handed over (selected on dev) against its SFT model, MiniLM and BM25."""
    path, chosen = f"{folder}/results.json", load(f"{folder}/selected.json")
    handed = f"{chosen['label']} ({chosen['query_way']})"
    pairs = RUN_PAIRS + [(f"the handed-over model against {name}", baseline, handed)
                         for name, baseline in (("its SFT model", "SFT (direct)"), ("MiniLM", "all-MiniLM-L6-v2"),
                                                ("BM25", "BM25")) if baseline != handed]
    present = rows(path)
    body = []
    for question, baseline, system in pairs:
        if baseline in present and system in present:  # a run without --auto has no auto rows
            body.append([question, f"{system} − {baseline}", diff_of(paired(path, baseline, system))])
    return markdown(["question", "comparison (nDCG@10, paired over the same queries)", "difference [95% interval]"],
                    body)


def main_job_dev() -> str:
    selected = load(f"{MAIN}/selected.json")
    body = []
    for stage, label in (("sft", "SFT"), ("rs", "rejection sampling"), ("rl", "RL")):
        trace = load(f"{MAIN}/selection-{stage}.json")
        for point in trace["history"]:
            ndcg = point["ndcg"]
            kept = "kept" if point["step"] == trace["best_step"] else ""
            body.append([label, str(point["step"]), f3(ndcg["direct"]),
                         f3(ndcg["reasoning"]) if "reasoning" in ndcg else "",
                         f3(ndcg["fused"]) if "fused" in ndcg else "",
                         optional(point["embed_token_rate"], 2), kept])
    queries = selected["dev_queries"]
    return markdown(["stage", "step", f"direct (nDCG@10, {queries} dev queries)", "reasoning", "fused", "token rate",
                     "kept"], body, right={1, 2, 3, 4, 5})


def format_trace(folder: str) -> str:
    """A run's dev scores at every evaluated step of SFT and rejection sampling (and RL, where it ran), with the
    token rate RL needs."""
    body = []
    for stage, label in (("sft", "SFT"), ("rs", "rejection sampling"), ("rl", "RL")):
        if stage == "rl" and not (ROOT / folder / "selection-rl.json").is_file():
            continue
        for point in load(f"{folder}/selection-{stage}.json")["history"]:
            ndcg = point["ndcg"]
            body.append([label, str(point["step"]), *(f3(ndcg[way]) if way in ndcg else ""
                                                      for way in ("direct", "reasoning", "fused")),
                         optional(point["embed_token_rate"], 2)])
    queries = load(f"{folder}/selection-sft.json")["history"][0]["queries"]
    return markdown(["stage", "step", f"direct (nDCG@10, {queries} dev queries)", "reasoning", "fused",
                     "token rate"], body, right={1, 2, 3, 4, 5})


def main_job_times() -> str:
    timings = load(f"{MAIN}/timings.json")
    names = {"sft": "SFT", "rs": "rejection sampling", "rl": "RL", "eval": "evaluation on the test split"}
    body = [[names.get(stage, stage), f"{seconds / 60:.1f}"] for stage, seconds in timings.items()]
    body.append(["**all stages**", f"**{sum(timings.values()) / 60:.1f}**"])
    return markdown(["stage (each scored on the dev split as it trains)", "minutes"], body, right={1})


def chosen_sentence() -> str:
    """What `sr3 train` printed last, for the run folder `make demo` writes (runs/train)."""
    s = load(f"{MAIN}/selected.json")
    low, high = s["dev_interval"]
    return (f"Use runs/train/{STAGE_FOLDER[s['label']]}/final ({s['label']}) with its {s['query_way']} query "
            f"embedding: the best model and way of this run on the dev split, nDCG@10 {s['dev_ndcg@10']:.3f} "
            f"[{low:.3f}, {high:.3f}] on {s['dev_queries']} dev queries.")


def finished_minutes(path: str) -> str:
    """The time `sr3 train` printed last ("sr3 train finished in N min") in a saved console log."""
    found = re.findall(r"sr3 train finished in ([0-9.]+) min", (ROOT / path).read_text())
    if not found:
        raise ValueError(f"{path} has no line 'sr3 train finished in N min'")
    return f"{found[-1]} min"


def stage_minutes(folder: str = MAIN) -> str:
    """The summed stage times of an `sr3 train` run folder (timings.json)."""
    return f"{sum(load(f'{folder}/timings.json').values()) / 60:.1f} min"


# ------------------------------------------------------------------ what the later stages cost, over seeds
TEST_SETS = (("wordnet-revdict", "in domain"), ("semanlink", "never trained on"),
             ("python-docstrings", "never trained on"))


def selection_seeds(folder: str) -> dict[int, str]:
    """seed -> the run's choice (FOLDER/seedN/selected.json) of a `scripts/selection_check.sh` folder."""
    return dict(sorted((int(path.parent.name[4:]), str(path.relative_to(ROOT)))
                       for path in (ROOT / folder).glob("seed*/selected.json")))


SELECTION_SEEDS = selection_seeds("docs/results/selection")  #: the seeds of the earlier recipe's runs


def stage_cost_table(folder: str = "docs/results/selection") -> str:
    compare = f"{folder}/compare.json"
    seeds = selection_seeds(folder)
    body = []
    for dataset, kind in TEST_SETS:
        size = load(f"{folder}/{dataset}-0.json")[0]
        rs = seed_comparison(compare, dataset, "sft direct", "rs direct")
        rl = seed_comparison(compare, dataset, "sft direct", "rl direct")
        chosen = seed_comparison(compare, dataset, "sft direct", "final chosen")
        for i, seed in enumerate(seeds):
            picked = load(seeds[seed])
            same = chosen["system_ndcg"][i] == chosen["baseline_ndcg"][i]
            label = (f"{dataset} ({kind}; {count(size['queries'])} queries, {count(size['docs'])} documents)"
                     if i == 0 else "")
            body.append([label, str(seed), f3(rs["baseline_ndcg"][i]), f3(rs["system_ndcg"][i]),
                         f3(rl["system_ndcg"][i]), f"{picked['label']}, {picked['query_way']}",
                         diff_of(rs["per_seed"][i]), diff_of(rl["per_seed"][i]),
                         "the same model" if same else diff_of(chosen["per_seed"][i])])
        body.append(["", "pooled", "", "", "", "", diff_of(rs["pooled"]), diff_of(rl["pooled"]), ""])
    return markdown(["test set", "seed", "SFT, direct", "after RS, direct", "after RL, direct", "the run's choice",
                     "RS − SFT", "RL − SFT", "choice − SFT"], body, right={1, 2, 3, 4})


def lm_loss_table() -> str:
    with_lm = "docs/results/stages/compare.json"
    without = "docs/results/stages/rs-lm-weight-0/compare.json"
    body = []
    for dataset, kind in TEST_SETS[:2]:
        a = seed_comparison(with_lm, dataset, "sft direct", "rs direct")
        b = seed_comparison(without, dataset, "sft direct", "rs direct")
        body.append([f"{dataset} ({kind})", diff_of(a["pooled"]), diff_of(b["pooled"])])
    return markdown(["RS direct − SFT direct, pooled over 3 seeds", "language-model loss at weight 0.5 (sr3 train)",
                     "without it (`--lm-weight 0`)"], body)


#: scripts/rs_check.sh's variants of the rejection-sampling stage (seed 2's SFT model, dev split), in the table's order:
#: (file in docs/results/rs-check, what it changes against the recipe before, its options)
RS_VARIANTS = (
    ("main-job", "the recipe before (the LM loss labels every row; anchor 1)", "sr3 train's stage before"),
    ("token", "the LM loss labels only the token after a kept reasoning, not the reasoning", "--no-lm-reasoning"),
    ("token-a10", "the same, anchor 10", "--no-lm-reasoning --anchor-weight 10"),
    ("nodirect", "the LM loss labels only the rows embedded after a reasoning", "--no-lm-direct"),
    ("nodirect-a10", "the same, anchor 10 (sr3 train now)", "--no-lm-direct --anchor-weight 10"),
    ("nodirect-head", "the same as --no-lm-direct, output layer held out of the LM loss", "--no-lm-direct --no-lm-head"),
    ("nodirect-head-a10", "the same, anchor 10", "--no-lm-direct --no-lm-head --anchor-weight 10"),
)


def rs_check_table() -> str:
    """Each variant's dev scores at its last step (8) beside its start, from scripts/rs_check.sh's selection files."""
    start = load("docs/results/rs-check/main-job.json")["history"][0]
    body = [["the SFT model (every variant's start)", "", "0", *(f3(start["ndcg"][w]) for w in ("direct", "reasoning")),
             optional(start["embed_token_rate"], 2)]]
    for name, what, options in RS_VARIANTS:
        end = load(f"docs/results/rs-check/{name}.json")["history"][-1]
        low, high = end["intervals"]["direct"]
        body.append([what, f"`{options}`" if options.startswith("--") else options, str(end["step"]),
                     f"{f3(end['ndcg']['direct'])} [{f3(low)}, {f3(high)}]", f3(end["ndcg"]["reasoning"]),
                     optional(end["embed_token_rate"], 2)])
    queries = start["queries"]
    return markdown(["rejection sampling", "options", "step", f"direct (dev nDCG@10, {queries} queries)", "reasoning",
                     "token rate"], body, right={2, 4, 5})


# ------------------------------------------------------------------------------- interpolation toward SFT
INTERPOLATION = "docs/results/interpolation"
#: the seeds whose dev curve is committed (curve-SEED.json), in order
INTERPOLATION_SEEDS = sorted(int(path.stem.split("-")[1]) for path in (ROOT / INTERPOLATION).glob("curve-*.json"))


def interpolation_dev_table() -> str:
    """The dev curve of (1 - a) * SFT + a * RL per seed (scripts/interpolation_check.py), the chosen weight marked."""
    body = []
    for seed in INTERPOLATION_SEEDS:
        curve = load(f"{INTERPOLATION}/curve-{seed}.json")
        for i, point in enumerate(curve["curve"]):
            n, ci = point["ndcg"], point["intervals"]
            cells = [f"{f3(n[w])} [{f3(ci[w][0])}, {f3(ci[w][1])}]" for w in ("direct", "reasoning", "fused")]
            chosen = "chosen" if point["alpha"] == curve["chosen_alpha"] else ""
            body.append([str(seed) if i == 0 else "", f"{point['alpha']:.2f}", *cells,
                         f"{point['embed_token_rate']:.2f}", chosen])
    return markdown(["seed", "a (0: SFT, 1: RL)", "direct", "reasoning", "fused", "token rate", ""], body,
                    right={1, 5})


def interpolation_test_table() -> str:
    """The mixed model chosen on dev against the SFT and RL models of the same seed, on the test splits."""
    body = []
    files = {"wordnet-revdict": f"{INTERPOLATION}/compare-in-domain.json",
             "semanlink": f"{INTERPOLATION}/compare-zero-shot.json",
             "python-docstrings": f"{INTERPOLATION}/compare-zero-shot.json"}
    alphas = [load(f"{INTERPOLATION}/curve-{seed}.json")["chosen_alpha"] for seed in INTERPOLATION_SEEDS]
    for dataset, kind in TEST_SETS:
        vs_sft = seed_comparison(files[dataset], dataset, "sft direct", "mix direct")
        vs_rl = seed_comparison(files[dataset], dataset, "rl direct", "mix direct")
        for i, alpha in enumerate(alphas):
            body.append([f"{dataset} ({kind})" if i == 0 else "", str(i), f"{alpha:.2f}", f3(vs_sft["baseline_ndcg"][i]),
                         f3(vs_rl["baseline_ndcg"][i]), f3(vs_sft["system_ndcg"][i]),
                         diff_of(vs_sft["per_seed"][i]), diff_of(vs_rl["per_seed"][i])])
        body.append(["", "pooled", "", "", "", "", diff_of(vs_sft["pooled"]), diff_of(vs_rl["pooled"])])
    return markdown(["test set", "seed", "a", "SFT, direct", "RL, direct", "mix, direct", "mix − SFT", "mix − RL"],
                    body, right={1, 2, 3, 4, 5})


def interpolation_reasoning_table() -> str:
    """In domain: the mix's reasoning against RL's, and its fused embedding against SFT's direct one."""
    path = f"{INTERPOLATION}/compare-in-domain.json"
    reasoning = seed_comparison(path, "wordnet-revdict", "rl reasoning", "mix reasoning")
    fused = seed_comparison(path, "wordnet-revdict", "sft direct", "mix fused")
    body = [[str(i), f3(reasoning["baseline_ndcg"][i]), f3(reasoning["system_ndcg"][i]),
             diff_of(reasoning["per_seed"][i]), f3(fused["system_ndcg"][i]), diff_of(fused["per_seed"][i])]
            for i in range(len(reasoning["per_seed"]))]
    body.append(["pooled", "", "", diff_of(reasoning["pooled"]), "", diff_of(fused["pooled"])])
    return markdown(["seed", "RL, reasoning", "mix, reasoning", "mix − RL (reasoning)", "mix, fused",
                     "mix fused − SFT direct"], body, right={0, 1, 2, 4})


# -------------------------------------------------------------------------------------------- zero-shot
def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def two_turn_files(dataset: str) -> list[str]:
    suffix = "120-full" if dataset == "wordnet-revdict" else "120"
    return [f"{TWO_TURN}/eval-{dataset}-seed{seed}-{suffix}.json" for seed in (0, 1, 2)]


def way_rows(path: str, way: str) -> dict:
    for r in load(path):
        if r["system"].endswith(f"({way})"):
            return r
    raise KeyError(f"{path} has no row for the way {way!r}")


def zero_shot_table() -> str:
    body = []
    for seed in SELECTION_SEEDS:
        sem = row(f"docs/results/selection/semanlink-{seed}.json", f"runs/selection/sft-{seed}/final (direct)")
        doc = row(f"docs/results/selection/python-docstrings-{seed}.json", f"runs/selection/sft-{seed}/final (direct)")
        body.append([f"sr3, the 30-minute run's model (SFT, direct), seed {seed}", f3(sem["ndcg@10"]),
                     f3(sem["recall@100"]), f3(doc["ndcg@10"])])
    for way in ("direct", "turn 2 fused"):
        semanlink = [way_rows(path, way) for path in two_turn_files("semanlink")]
        body.append([f"sr3, the two-turn recipe, {way} (mean of 3 seeds)", f3(mean([r["ndcg@10"] for r in semanlink])),
                     f3(mean([r["recall@100"] for r in semanlink])), "not measured"])
    for system in ("BM25", "all-MiniLM-L6-v2"):
        r = _semanlink_baseline(system)
        body.append([system, f3(r["ndcg@10"]), f3(r["recall@100"]), "not measured"])
    sem = load("docs/results/selection/semanlink-0.json")[0]
    doc = load("docs/results/selection/python-docstrings-0.json")[0]
    return markdown(["system", f"semanlink nDCG@10 ({count(sem['queries'])} queries, {count(sem['docs'])} documents)",
                     "semanlink Recall@100",
                     f"python-docstrings nDCG@10 ({count(doc['queries'])} queries, {count(doc['docs'])} documents)"],
                    body, right={1, 2, 3})


def _semanlink_baseline(system: str) -> dict:
    for r in load(SEMANLINK_BASELINES):
        if r["system"] == system and r["dataset"] == "semanlink":
            return r
    raise KeyError(f"{SEMANLINK_BASELINES} has no {system} row on semanlink")


def semanlink_baselines() -> str:
    sft = row("docs/results/selection/semanlink-0.json", "runs/selection/sft-0/final (direct)")
    return (f"{f3(sft['ndcg@10'])}, against {f3(_semanlink_baseline('BM25')['ndcg@10'])} for BM25 and "
            f"{f3(_semanlink_baseline('all-MiniLM-L6-v2')['ndcg@10'])} for all-MiniLM-L6-v2")


# ------------------------------------------------------------------------------------ the two-turn recipe
WAYS = ("direct", "reasoning", "fused", "turn 2", "turn 2 fused")


def two_turn_table(dataset: str) -> str:
    files = two_turn_files(dataset)
    within = f"{TWO_TURN}/within-{dataset}-{'120-full' if dataset == 'wordnet-revdict' else '120'}.json"
    body = []
    for way in WAYS:
        scores = [way_rows(path, way)["ndcg@10"] for path in files]
        cells = [way] + [f3(s) for s in scores] + [f"{f3(mean(scores))} ± {statistics.stdev(scores):.3f}"]
        if way == "direct":
            cells += ["", ""]
        else:
            pooled = comparison(within, "mean of 3", f"{way} vs direct")
            per_seed = [comparison(within, path.rsplit("/", 1)[1], f"{way} vs direct") for path in files]
            cells += [diff_of(pooled), ", ".join(signed(p["diff"]) for p in per_seed)]
        body.append(cells)
    first = load(files[0])[0]
    return markdown([f"way ({count(first['queries'])} queries, {count(first['docs'])} documents; nDCG@10)", "seed 0",
                     "seed 1", "seed 2", "mean ± std", "pooled against its direct [95% interval]",
                     "per seed against its direct"], body, right={1, 2, 3, 4})


def full_scale_baselines() -> str:
    base = "docs/results/full-scale/baselines-wordnet-revdict.json"
    against = f"{TWO_TURN}/against-minilm-wordnet-revdict.json"
    body = []
    for system in ("BM25", "all-MiniLM-L6-v2"):
        r = row(base, system)
        body.append([system, f3(r["ndcg@10"]), f3(r["recall@100"]), f3(r["mrr@10"]), ""])
    for way in ("direct", "fused", "turn 2 fused"):
        found = [way_rows(path, way) for path in two_turn_files("wordnet-revdict")]
        body.append([f"sr3, the two-turn recipe, {way} (mean of 3 seeds)", f3(mean([r["ndcg@10"] for r in found])),
                     f3(mean([r["recall@100"] for r in found])), f3(mean([r["mrr@10"] for r in found])),
                     diff_of(comparison(against, "mean of 3", f"{way} vs all-MiniLM-L6-v2"))])
    first = row(base, "BM25")
    return markdown([f"system ({where(first)})", "nDCG@10", "Recall@100", "MRR@10",
                     "against all-MiniLM-L6-v2 (pooled over the seeds) [95% interval]"], body, right={1, 2, 3})


def two_turn_gain() -> str:
    pooled = comparison(f"{TWO_TURN}/within-wordnet-revdict-120-full.json", "mean of 3", "fused vs direct")
    return f"{signed(pooled['diff'])} nDCG@10 [{signed(pooled['low'])}, {signed(pooled['high'])}]"


# ------------------------------------------------------------------------------------ other options
def options_table() -> str:
    auto = "docs/results/auto/within-wordnet-revdict-pooled.json"
    mixture = "docs/results/mixture/compare.json"
    latent = "docs/results/latent/half-3-seeds/compare.json"
    auto_semanlink = [comparison(f"docs/results/auto/seed{s}/within-semanlink-auto{s}.json", "semanlink.json",
                                 "auto vs direct") for s in (0, 1, 2)]
    auto_docstrings = comparison("docs/results/auto/seed2-from-main-job-seed2/within-python-docstrings-seed2.json",
                                 "python-docstrings.json", "auto vs direct")

    def mix(dataset: str) -> str:
        entry = seed_comparison(mixture, dataset, "wn direct", "mix direct")
        seeds = ", ".join(signed(p["mean"]) for p in entry["per_seed"])
        return f"{diff_of(entry['pooled'])} (seeds {seeds})"

    body = [
        ["`sr3 train --auto` (RL trains the choice whether to reason)", "its own direct embedding",
         diff_of(comparison(auto, "mean of 3", "auto vs direct")),
         "per seed " + ", ".join(diff_of(c) for c in auto_semanlink),
         f"{diff_of(auto_docstrings)} (one seed)"],
        ["a mixture, `--dataset wordnet-revdict:3 python-docstrings:1`",
         "the same recipe on wordnet-revdict alone, direct", mix("wordnet-revdict"), mix("semanlink"),
         mix("python-docstrings") + " (trained on)"],
        ["8 latent think tokens (`--latent-tokens 8 --latent-fraction 0.5`)", "the SFT model's direct embedding",
         diff_of(seed_comparison(latent, "wordnet-revdict", "sft direct", "latent latent")["pooled"]),
         diff_of(seed_comparison(latent, "semanlink", "sft direct", "latent latent")["pooled"]), "not measured"],
    ]
    return markdown(["option (3 seeds unless said)", "against", "wordnet-revdict (200 queries, 2,000 documents)",
                     "semanlink (never trained on)", "python-docstrings test"], body)


# ------------------------------------------------------------------------------------ the environment
def lazy_refresh_table() -> str:
    bench = load("benchmarks/results/bench_refresh_rl.json")
    body = [[r["policy"], count(r["corpus_docs"]), f"{r['rows_reencoded_per_step']:,.0f}",
             f"{100 * r['share_of_corpus']:.1f}%", f"{r['scoring_s_per_step']:.2f}", f"{r['step_s']:.1f}",
             f"{r['run_s'] / 60:.1f}", f3(r["ndcg@10_start"]), f3(r["ndcg@10_end"])] for r in bench["rows"]]
    return markdown(["refresh", "index rows", "rows re-encoded / step", "share of the index", "scoring s / step",
                     "step s", "whole run, min", "held-out nDCG@10 at the start", "after the last step"], body,
                    right=set(range(1, 9)))


# ------------------------------------------------------------------ generic: any committed results file
def eval_table(path: str) -> str:
    """An `sr3 eval` / `sr3 train` results file as a table (the archive's raw tables)."""
    results = load(path)
    body = [[r["system"], f3(r["ndcg@10"]), f3(r["recall@100"]), f3(r["mrr@10"]), optional(token_rate(r), 2),
             optional(r.get("reasoning_length"), 1)] for r in results]
    if len({where(r) for r in results}) == 1:
        return markdown([f"system ({where(results[0])})", "nDCG@10", "Recall@100", "MRR@10", "token rate",
                         "reasoning tokens"], body, right={1, 2, 3, 4, 5})
    body = [[where(r)] + cells for r, cells in zip(results, body)]
    return markdown(["test set", "system", "nDCG@10", "Recall@100", "MRR@10", "token rate", "reasoning tokens"], body,
                    right={2, 3, 4, 5, 6})


def compare_table(path: str) -> str:
    """`scripts/compare_evals.py`'s JSON as a table."""
    body = []
    for line in load(path):
        model = line["model"].rsplit("/", 1)[-1]
        score = f3(line["ndcg@10"]) + (f" ± {line['std']:.3f}" if "std" in line else "")
        body.append([model, line["mode"], score, diff_of(line) if "low" in line else ""])
    return markdown(["model", "comparison", "nDCG@10", "difference [95% interval]"], body, right={2})


def value_ndcg(path: str, system: str) -> str:
    return f3(row(path, system)["ndcg@10"])


def value_diff(path: str, model: str, mode: str) -> str:
    return diff_of(comparison(path, model, mode))


def value_pooled(path: str, dataset: str, baseline: str, system: str) -> str:
    return diff_of(seed_comparison(path, dataset, baseline, system)["pooled"])


def value_paired(path: str, baseline: str, system: str) -> str:
    return diff_of(paired(path, baseline, system))


def value_wall(path: str) -> str:
    return minutes_seconds(load(path)["wall_seconds"])


TABLES: dict[str, Callable[..., str]] = {
    "main-job": main_job_table,
    "readme-main-job": readme_main_job_table,
    "main-job-differences": run_differences,
    "run-differences": run_differences,
    "main-job-dev": main_job_dev,
    "main-job-times": main_job_times,
    "format-trace": format_trace,
    "stage-cost": stage_cost_table,
    "lm-loss": lm_loss_table,
    "rs-check": rs_check_table,
    "interpolation-dev": interpolation_dev_table,
    "interpolation-test": interpolation_test_table,
    "interpolation-reasoning": interpolation_reasoning_table,
    "zero-shot": zero_shot_table,
    "two-turn-wordnet-revdict": lambda: two_turn_table("wordnet-revdict"),
    "two-turn-semanlink": lambda: two_turn_table("semanlink"),
    "full-scale-baselines": full_scale_baselines,
    "options": options_table,
    "lazy-refresh": lazy_refresh_table,
    "eval": eval_table,
    "compare": compare_table,
}
VALUES: dict[str, Callable[..., str]] = {
    "chosen": chosen_sentence,
    "stage-minutes": stage_minutes,
    "finished": finished_minutes,
    "semanlink-baselines": semanlink_baselines,
    "two-turn-gain": two_turn_gain,
    "ndcg": value_ndcg,
    "diff": value_diff,
    "pooled": value_pooled,
    "paired": value_paired,
    "wall": value_wall,
}


# ------------------------------------------------------------------------------------------- rendering
def render_one(kind: str, spec: str, registry: dict[str, Callable[..., str]]) -> str:
    name, _, rest = spec.strip().partition(" ")
    args = [part.strip() for part in rest.split(" | ")] if rest else []
    if name not in registry:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name](*args)


def render_page(text: str, page: str) -> tuple[str, list[str]]:
    """The page with every marked table and value rendered, and the names of those that changed."""
    changed: list[str] = []

    def table(match: re.Match) -> str:
        spec = match["name"]
        try:
            new = render_one("table", spec, TABLES)
        except (KeyError, FileNotFoundError, ValueError) as error:
            raise SystemExit(f"{page}: table {spec!r}: {error}") from error
        if match["body"].strip("\n") != new:
            changed.append(f"{page}: table {spec!r}")
        return f"<!-- table: {spec} -->\n{new}\n<!-- /table -->"

    def value(match: re.Match) -> str:
        spec = match["name"]
        try:
            new = render_one("value", spec, VALUES)
        except (KeyError, FileNotFoundError, ValueError) as error:
            raise SystemExit(f"{page}: value {spec!r}: {error}") from error
        if match["body"] != new:
            changed.append(f"{page}: value {spec!r} reads {match['body']!r}, the JSON gives {new!r}")
        return f"<!-- value: {spec} -->{new}<!-- /value -->"

    return VALUE.sub(value, TABLE.sub(table, text)), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs from its JSON")
    args = parser.parse_args(argv)
    differs: list[str] = []
    for page in PAGES:
        path = ROOT / page
        if not path.exists():
            continue
        text = path.read_text()
        new, changed = render_page(text, page)
        differs += changed
        if not args.check and new != text:
            path.write_text(new)
    if args.check and differs:
        print("These differ from the committed JSON (python scripts/render_results.py rewrites them):", file=sys.stderr)
        for line in differs:
            print(f"  {line}", file=sys.stderr)
        return 1
    if not args.check:
        for line in differs:
            print(f"rendered {line.split(' reads ')[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
