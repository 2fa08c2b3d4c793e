#!/usr/bin/env bash
# Three RL seeds of the best two-turn recipe (docs/results.md, "Full scale"; the 60-step seeds in
# docs/results-archive.md): is turn 2 (or turn 2 fused with the direct embedding) above the same model's direct embedding,
# over seeds? Run after scripts/two_turn.sh, whose OUT/rs-feedback model all seeds start from and whose runs
# OUT/rs-feedback-rl-long (60 steps) and OUT/rs-feedback-rl-120 (120 steps) are seed 0.
#
#   bash scripts/two_turn_seeds.sh            (OUT=runs/two-turn SEEDS="1 2" STEPS=60 CUT=sub
#                                              DATASETS="wordnet-revdict semanlink" EVAL_ARGS=)
#   STEPS=120 CUT=full DATASETS=wordnet-revdict EVAL_ARGS="--precision bf16" bash scripts/two_turn_seeds.sh
#
# Each seed: `sr3 rl --turns 2 --steps STEPS` with that seed (its training queries, index and samples; a
# 120-step run resumes a copy of the seed's 60-step run when there is one, which gives the same model in half
# the time), then `sr3 eval --turns 2` of the model with reasoning (rows: direct, reasoning, fused, turn 2,
# turn 2 fused) on wordnet-revdict (CUT=sub: 200 test queries, 2,000-document sub-corpus, as the main job;
# CUT=full: all 1,000 test queries against the whole 82,115-document corpus) and semanlink (whole), the same
# evaluation for every seed; scripts/compare_evals.py --within direct then compares each way with the model's
# own direct row, per seed and pooled. On 2 CPU cores: about 20 min of RL per 60 steps and seed (two seeds
# side by side with OMP_NUM_THREADS=1 take about as long as one), 8 min of evaluation per model with CUT=sub,
# 25-50 min with CUT=full (the corpus encoding; EVAL_ARGS="--precision bf16" halves it on CPUs with AVX-512
# BF16 or AMX). Results: OUT/seeds/.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/two-turn}
SEEDS=${SEEDS:-"1 2"}
STEPS=${STEPS:-60}
CUT=${CUT:-sub}
DATASETS=${DATASETS-"wordnet-revdict semanlink"}  # DATASETS= (empty): train only
case "$STEPS" in
  60) run0=long; tag="" ;;
  120) run0=120; tag="-120" ;;
  *) echo "STEPS must be 60 or 120 (seed 0's runs of scripts/two_turn.sh), not $STEPS" >&2; exit 2 ;;
esac
case "$CUT" in
  sub) wordnet_cut=(--num-queries 200 --corpus-docs 2000); tag_cut="" ;;
  full) wordnet_cut=(--num-queries none --corpus-docs none); tag_cut="-full" ;;
  *) echo "CUT must be sub or full, not $CUT" >&2; exit 2 ;;
esac
mkdir -p "$OUT/seeds"
declare -A model=([0]="$OUT/rs-feedback-rl-$run0/final")
for seed in $SEEDS; do
  run="$OUT/seeds/rl-seed$seed$tag"
  model[$seed]="$run/final"
  test -d "${model[$seed]}" && continue
  resume=()
  if [ "$STEPS" != 60 ] && [ -d "$OUT/seeds/rl-seed$seed/final" ] && [ ! -d "$run" ]; then
    cp -r "$OUT/seeds/rl-seed$seed" "$run" && rm -rf "$run/final" "$run/.sr3.lock"
  fi
  [ -d "$run" ] && resume=(--resume)
  $SR3 rl --model "$OUT/rs-feedback/final" --num-queries 1000 --corpus-docs 1000 --seed "$seed" --turns 2 \
    --steps "$STEPS" --eval-every 0 --save-every 20 --output-dir "$run" "${resume[@]}"
done
for dataset in $DATASETS; do
  cut=("${wordnet_cut[@]}")
  test "$dataset" = semanlink && cut=(--num-queries none --corpus-docs none)
  files=()
  for seed in 0 $SEEDS; do
    file="$OUT/seeds/eval-$dataset-seed$seed$tag$tag_cut.json"
    test -f "$file" || $SR3 eval --models "${model[$seed]}" --datasets "$dataset" "${cut[@]}" --turns 2 \
      --no-baselines ${EVAL_ARGS:-} --output "$file"
    files+=("$file")
  done
  $PYTHON scripts/compare_evals.py --within direct "${files[@]}" --output "$OUT/seeds/within-$dataset$tag$tag_cut.json"
done | tee "$OUT/seeds/results$tag$tag_cut.md"
