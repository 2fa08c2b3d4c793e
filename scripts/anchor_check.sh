#!/usr/bin/env bash
# How strong must the anchor be? The main job's rejection-sampling stage, from a given SFT model, at several
# --anchor-weight values; each run scores its start and its end on the dev split (never the test split) and prints
# the dev nDCG@10 of both (direct, reasoning, fused) and the token rate, from each run's selection.json.
#
#   bash scripts/anchor_check.sh runs/main/sft/final runs/anchor 0 1 10 30
#
# About 6 min a weight on 2 CPU cores with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
SFT=${1:?usage: scripts/anchor_check.sh SFT_MODEL OUT WEIGHT...}
OUT=${2:?usage: scripts/anchor_check.sh SFT_MODEL OUT WEIGHT...}
shift 2
mkdir -p "$OUT"
for weight in "$@"; do
  test -f "$OUT/rs-$weight/final/sr3_embedder.json" ||
    $SR3 sft --model "$SFT" --num-queries 1000 --corpus-docs 1000 --steps 8 --batch-size 16 --reasoning-fraction 0.5 \
      --reasoning-samples 4 --keep best --reasoning-temperature 0.5 --lm-weight 0.5 --learning-rate 2e-5 \
      --reasoning-tokens 48 --eval-every 8 --eval-queries 100 --eval-docs 1000 --select-by reasoning \
      --anchor-weight "$weight" --output-dir "$OUT/rs-$weight"
  rm -rf "$OUT/rs-$weight"/checkpoint-*
done
$PYTHON - "$OUT" "$@" <<'PY'
import json, sys
out, weights = sys.argv[1], sys.argv[2:]
print("| anchor weight | step | direct | reasoning | fused | token rate |")
print("|---:|---:|---:|---:|---:|---:|")
for weight in weights:
    for h in json.load(open(f"{out}/rs-{weight}/selection.json"))["history"]:
        n, i = h["ndcg"], h["intervals"]
        cells = [f"{n[w]:.3f} [{i[w][0]:.3f}, {i[w][1]:.3f}]" for w in ("direct", "reasoning", "fused")]
        print(f"| {weight} | {h['step']} | " + " | ".join(cells) + f" | {h['embed_token_rate']:.2f} |")
PY
