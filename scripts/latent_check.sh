#!/usr/bin/env bash
# Do trained think tokens pay once the direct layout keeps its training (docs/results.md, "Options that did not beat the direct embedding")?
# For each seed, the main job's SFT stage twice, from the same base model:
#   OUT/sft-SEED      the main job's SFT (`sr3 train`'s first stage: 24 steps of 16 queries, no reasoning)
#   OUT/latent-SEED   the same with 8 think tokens, half of the direct queries through them (--latent-fraction 0.5)
# then both models direct, written reasoning (at most 8 tokens: the think tokens' count), fused and latent:
#   OUT/wordnet-revdict-SEED.json   in domain: the main job's 200 test queries, 2,000-document sub-corpus
#   OUT/semanlink-SEED.json         zero-shot: semanlink whole (every query, the whole corpus)
# and the paired differences, pooled over the seeds (scripts/seed_compare.py).
#
#   bash scripts/latent_check.sh runs/latent 0 1 2
#
# A model folder that holds final/ is kept. About 4 min of training a model and 4 of evaluation a seed on 2 CPU
# cores with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${1:?usage: scripts/latent_check.sh OUT SEED...}
shift
SEEDS=("${@:-0}")
SFT=(--steps 24 --batch-size 16 --reasoning-fraction 0 --lm-weight 0 --num-queries 1000 --corpus-docs 1000)
mkdir -p "$OUT"
for seed in "${SEEDS[@]}"; do
  test -d "$OUT/sft-$seed/final" || $SR3 sft "${SFT[@]}" --seed "$seed" --output-dir "$OUT/sft-$seed"
  test -d "$OUT/latent-$seed/final" ||
    $SR3 sft "${SFT[@]}" --seed "$seed" --latent-tokens 8 --latent-fraction 0.5 --output-dir "$OUT/latent-$seed"
  rm -rf "$OUT"/{sft,latent}-"$seed"/checkpoint-*  # GBs, not needed once final/ is written
  test -f "$OUT/wordnet-revdict-$seed.json" ||
    $SR3 eval --models "$OUT/sft-$seed/final" "$OUT/latent-$seed/final" --datasets wordnet-revdict --num-queries 200 \
      --corpus-docs 2000 --reasoning-tokens 8 --no-baselines --output "$OUT/wordnet-revdict-$seed.json"
  test -f "$OUT/semanlink-$seed.json" ||
    $SR3 eval --models "$OUT/sft-$seed/final" "$OUT/latent-$seed/final" --datasets semanlink --num-queries none \
      --corpus-docs none --reasoning-tokens 8 --no-baselines --output "$OUT/semanlink-$seed.json"
done
$PYTHON scripts/seed_compare.py "$OUT" --seeds "${SEEDS[@]}" --datasets wordnet-revdict semanlink \
  --pair sft:direct latent:latent --pair sft:direct latent:direct --pair latent:direct latent:latent \
  --pair latent:reasoning latent:latent --pair sft:direct sft:reasoning
