#!/usr/bin/env bash
# Does the run hand the user its best model? For each seed, the main job (`sr3 train`: every stage scored on the dev
# split and its best step kept, rejection sampling and RL anchored to their starting model's direct embedding), then
# each stage's selected model on the test splits, in domain and on data no stage trained on:
#   OUT/train-SEED                  the main job (its table: wordnet-revdict test, 200 queries, 2,000 documents)
#   OUT/{sft,rs,rl}-SEED            links to its stages' folders
#   OUT/wordnet-revdict-SEED.json   the table's rows, labelled by model folder
#   OUT/semanlink-SEED.json, OUT/python-docstrings-SEED.json
#                                   zero-shot: semanlink whole and python-docstrings' test split whole; the final
#                                   model in every way (direct, reasoning, fused, auto), the others directly
# then the paired differences per seed and pooled (scripts/seed_compare.py): after rejection sampling and after RL
# against SFT (direct), and the final model in the way it recorded (chosen) against the SFT model's direct embedding.
#
#   bash scripts/selection_check.sh runs/selection 0 1 2
#
# TRAIN_ARGS: more `sr3 train` options (e.g. TRAIN_ARGS="--anchor-weight 0"). About 25 min a seed on 2 CPU cores
# with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
OUT=${1:?usage: scripts/selection_check.sh OUT SEED...}
shift
SEEDS=("${@:-0}")
mkdir -p "$OUT/direct"
for seed in "${SEEDS[@]}"; do
  test -f "$OUT/train-$seed/results.json" || $SR3 train --seed "$seed" ${TRAIN_ARGS:-} --output-dir "$OUT/train-$seed"
  rm -rf "$OUT/train-$seed"/{sft,rs,rl}/checkpoint-*  # GBs, not needed once final/ is written
  for stage in sft rs rl; do ln -sfn "train-$seed/$stage" "$OUT/$stage-$seed"; done
  $PYTHON - "$OUT" "$seed" <<'PY'
import json, sys
out, seed = sys.argv[1], sys.argv[2]
folders = {"SFT": "sft", "SFT+RS": "rs", "SFT+RS+RL": "rl"}
rows = json.load(open(f"{out}/train-{seed}/results.json"))
for row in rows:
    label, _, way = row["system"].rpartition(" (")
    if label in folders:
        row["system"] = f"{out}/{folders[label]}-{seed}/final ({way}"
json.dump(rows, open(f"{out}/wordnet-revdict-{seed}.json", "w"), indent=1)
PY
  for dataset in semanlink python-docstrings; do
    test -f "$OUT/direct/$dataset-$seed.json" ||
      $SR3 eval --models "$OUT/sft-$seed/final" "$OUT/rs-$seed/final" --datasets "$dataset" --num-queries none \
        --corpus-docs none --no-reasoning --no-baselines --output "$OUT/direct/$dataset-$seed.json"
    test -f "$OUT/$dataset-$seed.json" ||
      $SR3 eval --models "$OUT/rl-$seed/final" --datasets "$dataset" --num-queries none --corpus-docs none --auto \
        --no-baselines --output "$OUT/$dataset-$seed.json"
  done
done
$PYTHON scripts/seed_compare.py "$OUT" "$OUT/direct" --seeds "${SEEDS[@]}" \
  --datasets wordnet-revdict semanlink python-docstrings \
  --pair sft:direct rs:direct --pair sft:direct rl:direct --pair sft:direct rl:chosen --pair rl:direct rl:chosen
