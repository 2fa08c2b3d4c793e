#!/usr/bin/env bash
# Issue 11's full-scale evidence: does reasoning (or fusion) beat the direct embedding, and RL beat the model
# before it, on wordnet-revdict's 1,000 test queries against the whole 82,115-document corpus, over 3 seeds?
#
#   bash scripts/full_scale.sh            (SEEDS="0 1 2" TRAIN_ARGS="--sft-steps 100 ..." DATASETS="wordnet-revdict semanlink")
#   EVAL_ARGS="--precision bf16" bash scripts/full_scale.sh   (on a CPU with AVX-512 BF16 or AMX: the corpus in about 18 min, not 27-49)
#
# Per seed: `sr3 train` with TRAIN_ARGS (its own 200-query table on a sub-corpus), then `sr3 eval` of the
# model before RL and after RL on the whole test split of each dataset (direct, reasoning, fused; rows keep
# per-query nDCG@10), then scripts/compare_evals.py compares them query by query
# (each eval file also holds direct, reasoning and fused rows of one model for the reasoning-vs-direct comparison). On 2 CPU cores the whole corpus took
# 27-49 min to encode per model in fp32 (18 with --precision bf16), so a seed costs 1.5-2 h; on a GPU a few minutes.
# Results: runs/full/seed*/ and runs/full/eval-*.json, runs/full/comparison-*.json, runs/full/within-*.json.
# With EVAL_ARGS="--turns 2" each model also gets its second-turn rows (turn 2, turn 2 fused).
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
SEEDS=${SEEDS:-"0 1 2"}
DATASETS=${DATASETS:-"wordnet-revdict semanlink"}
OUT=${OUT:-runs/full}
for seed in $SEEDS; do
  run="$OUT/seed$seed"
  test -f "$run/results.json" || $SR3 train --seed "$seed" --output-dir "$run" ${TRAIN_ARGS:-} $( [ -d "$run" ] && echo --resume )
  before="$run/rs/final"; test -d "$before" || before="$run/sft/final"
  for dataset in $DATASETS; do
    test -f "$OUT/eval-before-$dataset-seed$seed.json" ||
      $SR3 eval --models "$before" --datasets "$dataset" --num-queries none --corpus-docs none --no-baselines \
        ${EVAL_ARGS:-} --output "$OUT/eval-before-$dataset-seed$seed.json"
    test -f "$OUT/eval-rl-$dataset-seed$seed.json" ||
      $SR3 eval --models "$run/rl/final" --datasets "$dataset" --num-queries none --corpus-docs none --no-baselines \
        ${EVAL_ARGS:-} --output "$OUT/eval-rl-$dataset-seed$seed.json"
  done
done
for dataset in $DATASETS; do  # each seed's model after RL against its own model before RL, same way of embedding
  for seed in $SEEDS; do
    $PYTHON scripts/compare_evals.py "$OUT/eval-before-$dataset-seed$seed.json" "$OUT/eval-rl-$dataset-seed$seed.json" \
      --output "$OUT/comparison-$dataset-seed$seed.json"
  done
done
for dataset in $DATASETS; do  # each way of embedding against the same model's direct row, per seed and pooled over seeds
  $PYTHON scripts/compare_evals.py --within direct $(for seed in $SEEDS; do echo "$OUT/eval-rl-$dataset-seed$seed.json"; done) \
    --output "$OUT/within-$dataset.json"
done
