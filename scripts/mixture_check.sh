#!/usr/bin/env bash
# Does training on a mixture of kinds of text (issue 24, item 2) keep the direct embedding in domain and lift it on
# data the model never saw? For each seed, the main job's recipe twice, from the same base model:
#   OUT/wn-SEED    `sr3 train` on wordnet-revdict alone (the main job)
#   OUT/mix-SEED   `sr3 train --dataset wordnet-revdict:3 python-docstrings:1` (a quarter of the training queries and
#                  of the training corpus from the standard library's docstrings)
# then, for both final (RL) models, direct and auto:
#   OUT/semanlink-SEED.json           zero-shot for both: semanlink whole (every query, the whole corpus)
#   OUT/python-docstrings-SEED.json   the docstrings' held-out test split (every query, the whole corpus): zero-shot
#                                     for the WordNet model, in the mixture's domain for the other
# and the paired differences (mixture - WordNet alone; auto - direct), pooled over the seeds. The in-domain rows are
# each run's own table (wordnet-revdict: the main job's 200 test queries, 2,000-document sub-corpus).
#
#   bash scripts/mixture_check.sh runs/mixture 0 1 2
#
# A run folder that already holds results.json is kept (so the main job's own run can be OUT/wn-0); an interrupted
# one, or one whose table is missing, continues (--resume). About 13 min of
# training a run and 2 of evaluation a seed on 2 CPU cores with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${1:?usage: scripts/mixture_check.sh OUT SEED...}
shift
SEEDS=("${@:-0}")
MIXTURE=(wordnet-revdict:3 python-docstrings:1)
mkdir -p "$OUT"
for seed in "${SEEDS[@]}"; do
  test -f "$OUT/wn-$seed/results.json" || $SR3 train --resume --seed "$seed" --no-baselines --output-dir "$OUT/wn-$seed"
  test -f "$OUT/mix-$seed/results.json" ||
    $SR3 train --resume --seed "$seed" --no-baselines --dataset "${MIXTURE[@]}" --output-dir "$OUT/mix-$seed"
  for data in semanlink python-docstrings; do
    test -f "$OUT/$data-$seed.json" ||
      $SR3 eval --models "$OUT/wn-$seed/rl/final" "$OUT/mix-$seed/rl/final" --datasets "$data" --num-queries none \
        --corpus-docs none --no-reasoning --auto --no-baselines --output "$OUT/$data-$seed.json"
  done
done
$PYTHON scripts/mixture_compare.py "$OUT" "${SEEDS[@]}"
