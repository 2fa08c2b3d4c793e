#!/usr/bin/env bash
# Does RL with reasoning beat SFT alone? `sr3 rl` from one SFT model with several seeds, each evaluated on
# wordnet-revdict exactly like docs/results-archive.md, "RL after a 100-step SFT" (500 test queries,
# 5,000-document sub-corpus, seed-0 sample),
# then compared query by query with the SFT model itself (scripts/compare_evals.py: paired bootstrap).
# Usage: bash scripts/rl_vs_sft.sh    (SFT=runs/sft/final SEEDS="0 1 2" NAME=rl RL_ARGS="--learning-rate 3e-5 ..."
#                                      EVAL_ARGS="--num-queries 200 ..." SFT_EVAL=runs/eval/sft-wordnet.json)
# About 17 min per seed on 2 CPU cores. Results: $SFT_EVAL and runs/eval/$NAME-seed*.json.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
SFT=${SFT:-runs/sft/final}
SEEDS=${SEEDS:-"0 1 2"}
NAME=${NAME:-rl}
SFT_EVAL=${SFT_EVAL:-runs/eval/sft-wordnet.json}
test -d "$SFT" || $SR3 sft --output-dir "$(dirname "$SFT")"
test -f "$SFT_EVAL" ||
  $SR3 eval --models "$SFT" --datasets wordnet-revdict --no-baselines ${EVAL_ARGS:-} --output "$SFT_EVAL"
for seed in $SEEDS; do
  test -f "runs/eval/$NAME-seed$seed.json" && continue
  $SR3 rl --model "$SFT" --seed "$seed" --output-dir "runs/$NAME-seed$seed" ${RL_ARGS:-}
  $SR3 eval --models "runs/$NAME-seed$seed/final" --datasets wordnet-revdict --no-baselines ${EVAL_ARGS:-} \
    --output "runs/eval/$NAME-seed$seed.json"
done
$PYTHON scripts/compare_evals.py "$SFT_EVAL" runs/eval/$NAME-seed*.json \
  --output "runs/eval/$NAME-comparison.json"
