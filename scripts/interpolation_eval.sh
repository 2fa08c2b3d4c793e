#!/usr/bin/env bash
# Does interpolation toward the SFT model keep the direct embedding on the test splits, in domain and on data no
# stage trained on? For each seed of a finished selection check (scripts/selection_check.sh OUT SEED...):
#   OUT/mix-SEED/final          (1 - a) * SFT + a * RL, a chosen on the dev split as `sr3 train --interpolate 0.25 0.5
#                               0.75` chooses it (scripts/interpolation_check.py; its dev curve in OUT/mix-SEED/curve.json)
#   OUT/mix/wordnet-revdict-SEED.json   the main job's table sample (200 queries, 2,000 documents): direct, reasoning, fused
#   OUT/mix/{semanlink,python-docstrings}-SEED.json   zero-shot, whole, direct
# then the paired differences per seed and pooled (scripts/seed_compare.py) against the SFT model's direct embedding
# and the RL model's ways.
#
#   bash scripts/interpolation_eval.sh runs/selection 0 1
#
# About 15 min a seed on 2 CPU cores with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${1:?usage: scripts/interpolation_eval.sh OUT SEED...}
shift
SEEDS=("$@")
mkdir -p "$OUT/mix"
for seed in "${SEEDS[@]}"; do
  test -f "$OUT/mix-$seed/final/sr3_embedder.json" ||
    $PYTHON scripts/interpolation_check.py "$OUT/sft-$seed/final" "$OUT/rl-$seed/final" "$OUT/mix-$seed/curve.json" \
      --alphas 0.25 0.5 0.75 --save "$OUT/mix-$seed/final"
  test -f "$OUT/mix/wordnet-revdict-$seed.json" ||
    $SR3 eval --models "$OUT/mix-$seed/final" --datasets wordnet-revdict --num-queries 200 --corpus-docs 2000 \
      --no-baselines --output "$OUT/mix/wordnet-revdict-$seed.json"
  for dataset in semanlink python-docstrings; do
    test -f "$OUT/mix/$dataset-$seed.json" ||
      $SR3 eval --models "$OUT/mix-$seed/final" --datasets "$dataset" --num-queries none --corpus-docs none \
        --no-reasoning --no-baselines --output "$OUT/mix/$dataset-$seed.json"
  done
done
$PYTHON scripts/seed_compare.py "$OUT" "$OUT/mix" --seeds "${SEEDS[@]}" --datasets wordnet-revdict \
  --pair sft:direct mix:direct --pair rl:direct mix:direct --pair sft:direct mix:fused --pair rl:reasoning mix:reasoning \
  --output "$OUT/mix/compare-in-domain.json"
$PYTHON scripts/seed_compare.py "$OUT/direct" "$OUT/mix" --seeds "${SEEDS[@]}" --datasets semanlink python-docstrings \
  --pair sft:direct mix:direct --pair rl:direct mix:direct --output "$OUT/mix/compare-zero-shot.json"
