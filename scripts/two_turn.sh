#!/usr/bin/env bash
# Does reading the retrieved documents let the 135M model retrieve better (docs/results-archive.md, "Two turns
# on the sub-corpus")? From a main job's models (`sr3 train`: TRAIN/sft, TRAIN/rs, TRAIN/rl), two-turn evaluation
# (turn 1: the direct embedding; turn 2: a reasoning that reads the top 3 documents turn 1 retrieved) of:
#   TRAIN/rs, TRAIN/rl          the main job's models, before and after its one-turn RL
#   OUT/rl                      TRAIN/rs after RL with two turns (RetrievalRefine-v0)
#   OUT/rs-feedback             the rejection-sampling stage redone from TRAIN/sft with half of its reasoning
#                               queries reading what their direct embedding retrieved (--feedback-fraction 0.5)
#   OUT/rs-feedback-rl          that model after RL with two turns
#   OUT/rs-feedback-rl-long     the same RL run three times as long (60 steps), evaluated on its own afterwards
#   OUT/rs-feedback-rl-120      and six times as long (120 steps; its first 60 steps are those of the run above, so
#                               `cp -r` of that run's folder and `--resume` give the same model in half the time)
#
#   bash scripts/two_turn.sh runs/train        (OUT=runs/two-turn SEED=0)
#
# Stages as in `sr3 train` (rejection sampling: 8 steps of 16 queries; RL: 20 steps of 4 queries x 4 reasonings;
# 1,000 training queries, 1,000-document index). Evaluation: wordnet-revdict (200 test queries, 2,000-document
# sub-corpus, as the main job) and semanlink (whole: 432 queries, 314 documents). About 60 min of training and
# 40 min of evaluation on 2 CPU cores.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
TRAIN=${1:?usage: scripts/two_turn.sh MAIN_JOB_OUTPUT_DIR [OUT]}
OUT=${2:-${OUT:-runs/two-turn}}
SEED=${SEED:-0}
DATA=(--num-queries 1000 --corpus-docs 1000 --seed "$SEED")
RL=(--turns 2 --steps 20 --eval-every 0)
test -d "$OUT/rl/final" || $SR3 rl --model "$TRAIN/rs/final" "${DATA[@]}" "${RL[@]}" --output-dir "$OUT/rl"
test -d "$OUT/rs-feedback/final" ||
  $SR3 sft --model "$TRAIN/sft/final" "${DATA[@]}" --steps 8 --batch-size 16 --reasoning-fraction 0.5 \
    --reasoning-samples 4 --keep best --reasoning-temperature 0.5 --lm-weight 0.5 --learning-rate 2e-5 \
    --save-every 3 --feedback-fraction 0.5 --output-dir "$OUT/rs-feedback"
test -d "$OUT/rs-feedback-rl/final" ||
  $SR3 rl --model "$OUT/rs-feedback/final" "${DATA[@]}" "${RL[@]}" --output-dir "$OUT/rs-feedback-rl"
models=("$TRAIN/rs/final" "$TRAIN/rl/final" "$OUT/rl/final" "$OUT/rs-feedback/final" "$OUT/rs-feedback-rl/final")
test -f "$OUT/wordnet-revdict.json" ||
  $SR3 eval --models "${models[@]}" --datasets wordnet-revdict --num-queries 200 --corpus-docs 2000 --turns 2 \
    --no-reasoning --no-baselines --output "$OUT/wordnet-revdict.json"
test -f "$OUT/semanlink.json" ||
  $SR3 eval --models "${models[@]}" --datasets semanlink --num-queries none --corpus-docs none --turns 2 \
    --no-reasoning --no-baselines --output "$OUT/semanlink.json"
test -d "$OUT/rs-feedback-rl-long/final" ||
  $SR3 rl --model "$OUT/rs-feedback/final" "${DATA[@]}" --turns 2 --steps 60 --eval-every 0 --save-every 20 \
    --output-dir "$OUT/rs-feedback-rl-long"
test -d "$OUT/rs-feedback-rl-120/final" ||
  $SR3 rl --model "$OUT/rs-feedback/final" "${DATA[@]}" --turns 2 --steps 120 --eval-every 0 --save-every 20 \
    --output-dir "$OUT/rs-feedback-rl-120"
for dataset in wordnet-revdict semanlink; do
  cut=(--num-queries 200 --corpus-docs 2000)
  test "$dataset" = semanlink && cut=(--num-queries none --corpus-docs none)
  for run in long 120; do
    test -f "$OUT/$run-$dataset.json" ||
      $SR3 eval --models "$OUT/rs-feedback-rl-$run/final" --datasets "$dataset" "${cut[@]}" --turns 2 --no-reasoning \
        --no-baselines --output "$OUT/$run-$dataset.json"
  done
done
# per dataset: nDCG@10 and token rate of each row; turn 2 against turn 1 (the direct embedding) of each model, and
# each model's turn 2 against that of the main job's model before RL, with paired 95% intervals
models+=("$OUT/rs-feedback-rl-long/final" "$OUT/rs-feedback-rl-120/final")
for dataset in wordnet-revdict semanlink; do
  $PYTHON - "$OUT/$dataset.json" "$OUT/long-$dataset.json" "$OUT/120-$dataset.json" "${models[@]}" <<'PY'
import json, sys
from sr3_agent.training.train_command import comparison_table
rows = [row for path in sys.argv[1:4] for row in json.load(open(path))]
models = sys.argv[4:]
print(f"### {rows[0]['dataset']}: {rows[0]['queries']} queries, {rows[0]['docs']:,} documents\n")
print("| system | nDCG@10 | Recall@100 | MRR@10 | token rate | reasoning tokens |\n|---|---:|---:|---:|---:|---:|")
for row in rows:
    rate = f"{row['embed_token_rate']:.2f} | {row['reasoning_length']:.1f}" if "embed_token_rate" in row else " | "
    print(f"| {row['system']} | {row['ndcg@10']:.3f} | {row['recall@100']:.3f} | {row['mrr@10']:.3f} | {rate} |")
pairs = [(f"{m} (direct)", f"{m} (turn 2)") for m in models] + [(f"{models[0]} (turn 2)", f"{m} (turn 2)") for m in models[1:]]
print()
print(comparison_table(rows, pairs))
PY
done > "$OUT/results.md"
cat "$OUT/results.md"
