#!/usr/bin/env bash
# Does RL with reasoning beat SFT alone? `sr3 rl` from one SFT model with several seeds, each evaluated on
# wordnet-revdict exactly like docs/results.md (500 test queries, 5,000-document sub-corpus, seed 0 sample).
# Usage: bash scripts/rl_vs_sft.sh            (SFT=runs/sft/final SEEDS="0 1 2" RL_ARGS="...")
# About 20 min per seed on 2 CPU cores. Results: runs/eval/rl-seed*.json; the SFT model's own row comes from
# `sr3 eval --models $SFT` with the same defaults.
set -euo pipefail
SR3=${SR3:-sr3}
SFT=${SFT:-runs/sft/final}
SEEDS=${SEEDS:-"0 1 2"}
test -d "$SFT" || $SR3 sft --output-dir "$(dirname "$SFT")"
test -f runs/eval/sft.json || $SR3 eval --models "$SFT" --datasets wordnet-revdict --no-baselines --output runs/eval/sft.json
for seed in $SEEDS; do
  $SR3 rl --model "$SFT" --seed "$seed" --output-dir "runs/rl-seed$seed" --eval-every 20 ${RL_ARGS:-}
  $SR3 eval --models "runs/rl-seed$seed/final" --datasets wordnet-revdict --no-baselines \
    --output "runs/eval/rl-seed$seed.json"
done
