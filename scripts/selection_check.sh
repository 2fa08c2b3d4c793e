#!/usr/bin/env bash
# Does the run hand the user its best model? For each seed, the main job (`sr3 train`: every stage scored on the dev
# split and its best step kept, rejection sampling and RL anchored to their starting model's direct embedding, and
# the run's choice of model and way in selected.json), then on the test splits, in domain and on data no stage
# trained on:
#   OUT/train-SEED                  the main job (its table: wordnet-revdict test, 200 queries, 2,000 documents)
#   OUT/{sft,rs,rl}-SEED            links to its stages' folders; OUT/final-SEED to the one the run chose on dev
#   OUT/wordnet-revdict-SEED.json   the table's rows, labelled by model folder
#   OUT/direct/{semanlink,python-docstrings}-SEED.json
#                                   zero-shot (semanlink whole, python-docstrings' test split whole): every stage's
#                                   model and the chosen one, directly
#   OUT/{semanlink,python-docstrings}-SEED.json
#                                   the chosen model in its recorded way, where that way is not direct
# then the paired differences per seed and pooled (scripts/seed_compare.py): after rejection sampling and after RL
# against SFT (direct), and the chosen model in its recorded way against the SFT model's direct embedding.
#
#   bash scripts/selection_check.sh runs/selection 0 1 2
#
# TRAIN_ARGS: more `sr3 train` options (e.g. TRAIN_ARGS="--anchor-weight 0"). About 30 min a seed on 2 CPU cores
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
  way=$($PYTHON - "$OUT" "$seed" <<'PY'
import json, sys
from pathlib import Path
out, seed = sys.argv[1], sys.argv[2]
folders = {"SFT": "sft", "SFT+RS": "rs", "SFT+RS+RL": "rl"}
chosen = json.loads(Path(f"{out}/train-{seed}/selected.json").read_text())
link = Path(f"{out}/final-{seed}")
link.unlink(missing_ok=True)
link.symlink_to(f"train-{seed}/{folders[chosen['label']]}")
rows = [{**row} for row in json.loads(Path(f"{out}/train-{seed}/results.json").read_text()) if " (" not in row["system"]]
for row in json.loads(Path(f"{out}/train-{seed}/results.json").read_text()):
    label, _, way = row["system"].rpartition(" (")
    for name in ([folders[label]] if label in folders else []) + (["final"] if label == chosen["label"] else []):
        rows.append({**row, "system": f"{out}/{name}-{seed}/final ({way}"})
Path(f"{out}/wordnet-revdict-{seed}.json").write_text(json.dumps(rows, indent=1))
print(chosen["query_way"])
PY
)
  for dataset in semanlink python-docstrings; do
    test -f "$OUT/direct/$dataset-$seed.json" ||
      $SR3 eval --models "$OUT"/{sft,rs,rl,final}-"$seed"/final --datasets "$dataset" --num-queries none \
        --corpus-docs none --no-reasoning --no-baselines --output "$OUT/direct/$dataset-$seed.json"
    if [ "$way" != direct ] && [ ! -f "$OUT/$dataset-$seed.json" ]; then
      $SR3 eval --models "$OUT/final-$seed/final" --datasets "$dataset" --num-queries none --corpus-docs none \
        $([ "$way" = auto ] && echo --auto) --no-baselines --output "$OUT/$dataset-$seed.json"
    fi
  done
done
$PYTHON scripts/seed_compare.py "$OUT" "$OUT/direct" --seeds "${SEEDS[@]}" \
  --datasets wordnet-revdict semanlink python-docstrings \
  --pair sft:direct rs:direct --pair sft:direct rl:direct --pair sft:direct final:chosen
