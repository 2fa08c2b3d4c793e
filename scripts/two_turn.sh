#!/usr/bin/env bash
# Does reading the retrieved documents let the 135M model retrieve better (docs/results.md, "Multi-turn: the sr3
# model")? RL with two turns (RetrievalRefine-v0) from the main job's model before RL, then two-turn evaluation
# (turn 1: the direct embedding; turn 2: a reasoning that reads the top 3 documents turn 1 retrieved) of three
# models: before RL, after the main job's one-turn RL, after two-turn RL.
#
#   bash scripts/two_turn.sh runs/train/rs/final runs/train/rl/final        (OUT=runs/two-turn SEED=0)
#
# RL as in `sr3 train` (20 steps of 4 queries x 4 reasonings, 1,000 training queries, 1,000-document index).
# Evaluation: wordnet-revdict (200 test queries, 2,000-document sub-corpus, as the main job) and semanlink (whole:
# 432 queries, 314 documents). About 7 min of RL and 20 min of evaluation on 2 CPU cores.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
BEFORE=${1:?usage: scripts/two_turn.sh MODEL_BEFORE_RL MODEL_AFTER_ONE_TURN_RL [OUT]}
ONE_TURN=${2:?usage: scripts/two_turn.sh MODEL_BEFORE_RL MODEL_AFTER_ONE_TURN_RL [OUT]}
OUT=${3:-${OUT:-runs/two-turn}}
SEED=${SEED:-0}
test -d "$OUT/rl/final" ||
  $SR3 rl --model "$BEFORE" --turns 2 --num-queries 1000 --corpus-docs 1000 --steps 20 --eval-every 0 --seed "$SEED" \
    --output-dir "$OUT/rl"
models=("$BEFORE" "$ONE_TURN" "$OUT/rl/final")
test -f "$OUT/wordnet-revdict.json" ||
  $SR3 eval --models "${models[@]}" --datasets wordnet-revdict --num-queries 200 --corpus-docs 2000 --turns 2 \
    --no-reasoning --no-baselines --output "$OUT/wordnet-revdict.json"
test -f "$OUT/semanlink.json" ||
  $SR3 eval --models "${models[@]}" --datasets semanlink --num-queries none --corpus-docs none --turns 2 \
    --no-reasoning --no-baselines --output "$OUT/semanlink.json"
# per dataset: nDCG@10 and token rate of each row; turn 2 against turn 1 (the direct embedding) of each model, and
# each model's turn 2 against the one before RL's, with paired 95% intervals
for dataset in wordnet-revdict semanlink; do
  $PYTHON - "$OUT/$dataset.json" "${models[@]}" <<'PY'
import json, sys
from sr3_agent.pipeline import comparison_table
rows, models = json.load(open(sys.argv[1])), sys.argv[2:]
print(f"### {rows[0]['dataset']}: {rows[0]['queries']} queries, {rows[0]['docs']:,} documents\n")
print("| system | nDCG@10 | Recall@100 | MRR@10 | token rate | reasoning tokens |\n|---|---:|---:|---:|---:|---:|")
for row in rows:
    print(f"| {row['system']} | {row['ndcg@10']:.3f} | {row['recall@100']:.3f} | {row['mrr@10']:.3f} "
          f"| {row.get('embed_token_rate', '')} | {row.get('reasoning_length', '')} |")
pairs = [(f"{m} (direct)", f"{m} (turn 2)") for m in models] + [(f"{models[0]} (turn 2)", f"{m} (turn 2)") for m in models[1:]]
print()
print(comparison_table(rows, pairs))
PY
done > "$OUT/results.md"
cat "$OUT/results.md"
