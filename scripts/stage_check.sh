#!/usr/bin/env bash
# Which stage of the main job moves its direct embedding, in domain and on data it never saw? For each seed, the main
# job's first two stages as `sr3 train` runs them:
#   OUT/sft-SEED   SFT (24 steps of 16 queries, no reasoning)
#   OUT/rs-SEED    rejection sampling from it (8 steps: half the queries reason, the best of 4 reasonings kept and
#                  learned with the language-model loss at weight 0.5)
# then both models' direct embeddings:
#   OUT/wordnet-revdict-SEED.json   in domain: the main job's 200 test queries, 2,000-document sub-corpus
#   OUT/semanlink-SEED.json         zero-shot: semanlink whole (every query, the whole corpus)
# and rs - sft, per seed and pooled (scripts/seed_compare.py).
#
#   bash scripts/stage_check.sh runs/stages 0 1 2
#
# RS_ARGS: more `sr3 sft` options for the rejection-sampling stage (they override the main job's, e.g.
# RS_ARGS="--lm-weight 0"). A model folder that holds final/ is kept (OUT/sft-SEED may be the SFT model of scripts/latent_check.sh).
# About 4 min of SFT, 3 of rejection sampling and 3 of evaluation a seed on 2 CPU cores with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${1:?usage: scripts/stage_check.sh OUT SEED...}
shift
SEEDS=("${@:-0}")
DATA=(--num-queries 1000 --corpus-docs 1000)
mkdir -p "$OUT"
for seed in "${SEEDS[@]}"; do
  test -d "$OUT/sft-$seed/final" || $SR3 sft "${DATA[@]}" --steps 24 --batch-size 16 --reasoning-fraction 0 \
    --lm-weight 0 --seed "$seed" --output-dir "$OUT/sft-$seed"
  test -d "$OUT/rs-$seed/final" || $SR3 sft "${DATA[@]}" --model "$OUT/sft-$seed/final" --steps 8 --batch-size 16 \
    --reasoning-fraction 0.5 --reasoning-samples 4 --keep best --reasoning-temperature 0.5 --lm-weight 0.5 \
    --learning-rate 2e-5 --reasoning-tokens 48 --seed "$seed" ${RS_ARGS:-} --output-dir "$OUT/rs-$seed"
  rm -rf "$OUT"/{sft,rs}-"$seed"/checkpoint-*  # GBs, not needed once final/ is written
  test -f "$OUT/wordnet-revdict-$seed.json" ||
    $SR3 eval --models "$OUT/sft-$seed/final" "$OUT/rs-$seed/final" --datasets wordnet-revdict --num-queries 200 \
      --corpus-docs 2000 --no-reasoning --no-baselines --output "$OUT/wordnet-revdict-$seed.json"
  test -f "$OUT/semanlink-$seed.json" ||
    $SR3 eval --models "$OUT/sft-$seed/final" "$OUT/rs-$seed/final" --datasets semanlink --num-queries none \
      --corpus-docs none --no-reasoning --no-baselines --output "$OUT/semanlink-$seed.json"
done
$PYTHON scripts/seed_compare.py "$OUT" --seeds "${SEEDS[@]}" --datasets wordnet-revdict semanlink \
  --pair sft:direct rs:direct
