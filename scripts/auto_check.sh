#!/usr/bin/env bash
# Does `auto` (the model decides whether to reason) hold level with the direct embedding where reasoning does not
# pay (docs/results.md, "Options that did not beat the direct embedding")? From a main job's run folder (`sr3 train`: TRAIN/sft, TRAIN/rs, TRAIN/rl):
#   OUT                 `sr3 train --auto` continued from TRAIN's finished SFT and rejection-sampling stages (copied):
#                       its RL keeps the direct path among each group's options; its table gives both models' auto
#                       rows beside direct, reasoning and fused, with paired intervals (wordnet-revdict: the main
#                       job's 200 test queries, 2,000-document sub-corpus)
#   OUT/semanlink.json  zero-shot: semanlink whole (every query, the whole corpus), TRAIN/rl (the main job's RL)
#                       and OUT/rl (RL with auto), each direct, reasoning, fused and auto
#   OUT/python-docstrings.json   the bundled set held out of this training: python-docstrings' test split (every
#                       query, the whole corpus), both models direct and auto
# then the paired differences of each way from the same model's direct embedding.
#
#   bash scripts/auto_check.sh runs/train        (OUT=runs/train-auto SEED=0)
#
# About 6 min of RL and 10 of evaluation on 2 CPU cores with bf16 units (ZERO_SHOT_ARGS=--no-reasoning: 5).
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
TRAIN=${1:?usage: scripts/auto_check.sh MAIN_JOB_OUTPUT_DIR [OUT]}
OUT=${2:-${OUT:-runs/train-auto}}
SEED=${SEED:-0}
mkdir -p "$OUT"
for stage in sft rs; do  # the finished models only (their checkpoints are GBs and not needed)
  test -d "$OUT/$stage/final" || { mkdir -p "$OUT/$stage" && cp -r "$TRAIN/$stage/final" "$OUT/$stage/final"; }
done
test -f "$OUT/results.json" || $SR3 train --auto --resume --seed "$SEED" --output-dir "$OUT"
test -f "$OUT/semanlink.json" ||
  $SR3 eval --models "$TRAIN/rl/final" "$OUT/rl/final" --datasets semanlink --num-queries none --corpus-docs none \
    --auto --no-baselines ${ZERO_SHOT_ARGS:-} --output "$OUT/semanlink.json"
test -f "$OUT/python-docstrings.json" ||
  $SR3 eval --models "$TRAIN/rl/final" "$OUT/rl/final" --datasets python-docstrings --num-queries none \
    --corpus-docs none --auto --no-reasoning --no-baselines --output "$OUT/python-docstrings.json"
for model in SFT+RS SFT+RS+RL; do
  echo "== in domain (wordnet-revdict, 200 test queries, 2,000-document sub-corpus), $model: each way against its direct"
  $PYTHON scripts/compare_evals.py --within direct --model "$model" "$OUT/results.json" --output "$OUT/within-wordnet-revdict-$model.json"
done
for data in semanlink python-docstrings; do
  for model in "$TRAIN/rl/final" "$OUT/rl/final"; do
    echo "== zero-shot ($data, every query, the whole corpus), $model: each way against its direct"
    $PYTHON scripts/compare_evals.py --within direct --model "$model" "$OUT/$data.json" \
      --output "$OUT/within-$data-$(basename "$(dirname "$(dirname "$model")")").json"
  done
done
