#!/usr/bin/env bash
# Holding the format in RL (docs/results-archive.md): RL from one model before RL with each format setting on and off,
# each model evaluated like the main job (200 test queries, 2,000-document sub-corpus, reasonings of <= 48 tokens).
#
#   bash scripts/rl_format.sh runs/train/rs/final        (OUT=runs/rl-format SEED=0)
#
# Variants (all 20 steps of 4 queries x 4 reasonings, as in `sr3 train`):
#   bonus-only   the token bonus alone: a reasoning cut at the cap is scored like the others, token appended
#   floor        + missing_token_reward -1 for a reasoning cut at the cap
#   floor-noaux  floor, without the auxiliary InfoNCE
#   token-0.1    floor + token LM loss (weight 0.1) where a better-than-mean reasoning wrote the token: the default
#   token-0.5    floor + token LM loss (weight 0.5)
# About 6 min of RL and 2 min of evaluation per variant on 2 CPU cores.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
START=${1:?usage: scripts/rl_format.sh MODEL_BEFORE_RL [OUT]}
OUT=${2:-${OUT:-runs/rl-format}}
SEED=${SEED:-0}
declare -A ARGS=(
  [bonus-only]="--missing-token-reward none --token-lm-weight 0"
  [floor]="--token-lm-weight 0"
  [floor-noaux]="--token-lm-weight 0 --aux-weight 0"
  [token-0.1]="--token-lm-weight 0.1"
  [token-0.5]="--token-lm-weight 0.5"
)
models=()
for name in bonus-only floor floor-noaux token-0.1 token-0.5; do
  test -d "$OUT/$name/final" ||
    $SR3 rl --model "$START" --num-queries 1000 --corpus-docs 1000 --steps 20 --eval-every 0 --seed "$SEED" \
      --output-dir "$OUT/$name" ${ARGS[$name]}
  models+=("$OUT/$name/final")
done
test -f "$OUT/results.json" ||
  $SR3 eval --models "$START" "${models[@]}" --datasets wordnet-revdict --num-queries 200 --corpus-docs 2000 \
    --no-baselines --output "$OUT/results.json"
# the table: token rate, length and nDCG@10 of each way; per variant, reasoning and fused against its direct
# embedding, and its reasoning against the starting model's (RL's gain), with paired 95% intervals
$PYTHON - "$OUT/results.json" "$START" "${models[@]}" > "$OUT/results.md" <<'PY'
import json, sys
from sr3_agent.training.train_command import comparison_table
rows = json.load(open(sys.argv[1]))
start, variants = sys.argv[2], sys.argv[3:]
print("| system | nDCG@10 | token rate | reasoning tokens |\n|---|---:|---:|---:|")
for row in rows:
    print(f"| {row['system']} | {row['ndcg@10']:.3f} | {row.get('embed_token_rate', '')} | {row.get('reasoning_length', '')} |")
pairs = [(f"{m} (direct)", f"{m} ({way})") for m in [start, *variants] for way in ("reasoning", "fused")]
pairs += [(f"{start} (reasoning)", f"{m} (reasoning)") for m in variants]
print()
print(comparison_table(rows, pairs))
PY
cat "$OUT/results.md"
