#!/usr/bin/env bash
# Three RL seeds of the best two-turn recipe (docs/results.md, "Multi-turn: the sr3 model reads what it
# retrieved"): is turn 2 (or turn 2 fused with the direct embedding) above the same model's direct embedding,
# over seeds? Run after scripts/two_turn.sh, whose OUT/rs-feedback model all seeds start from and whose 60-step
# run OUT/rs-feedback-rl-long is seed 0.
#
#   bash scripts/two_turn_seeds.sh            (OUT=runs/two-turn SEEDS="1 2" DATASETS="wordnet-revdict semanlink")
#
# Each seed: `sr3 rl --turns 2 --steps 60` with that seed (its training queries, index and samples), then
# `sr3 eval --turns 2` of the model with reasoning (rows: direct, reasoning, fused, turn 2, turn 2 fused) on
# wordnet-revdict (200 test queries, 2,000-document sub-corpus, as the main job) and semanlink (whole), the same
# evaluation sample for every seed; scripts/compare_evals.py --within direct then compares each way with the
# model's own direct row, per seed and pooled. About 20 min of RL per seed and 8 min of evaluation per model on
# 2 CPU cores. Results: OUT/seeds/.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/two-turn}
SEEDS=${SEEDS:-"1 2"}
DATASETS=${DATASETS:-"wordnet-revdict semanlink"}
mkdir -p "$OUT/seeds"
declare -A model=([0]="$OUT/rs-feedback-rl-long/final")
for seed in $SEEDS; do
  model[$seed]="$OUT/seeds/rl-seed$seed/final"
  test -d "${model[$seed]}" ||
    $SR3 rl --model "$OUT/rs-feedback/final" --num-queries 1000 --corpus-docs 1000 --seed "$seed" --turns 2 \
      --steps 60 --eval-every 0 --save-every 20 --output-dir "$OUT/seeds/rl-seed$seed"
done
for dataset in $DATASETS; do
  cut=(--num-queries 200 --corpus-docs 2000)
  test "$dataset" = semanlink && cut=(--num-queries none --corpus-docs none)
  files=()
  for seed in 0 $SEEDS; do
    file="$OUT/seeds/eval-$dataset-seed$seed.json"
    test -f "$file" || $SR3 eval --models "${model[$seed]}" --datasets "$dataset" "${cut[@]}" --turns 2 \
      --no-baselines --output "$file"
    files+=("$file")
  done
  $PYTHON scripts/compare_evals.py --within direct "${files[@]}" --output "$OUT/seeds/within-$dataset.json"
done | tee "$OUT/seeds/results.md"
