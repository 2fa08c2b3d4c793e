#!/usr/bin/env bash
# Which rejection-sampling settings keep the direct embedding? The main job's rejection-sampling stage, from a given
# SFT model, once per named variant (NAME=OPTIONS: `sr3 sft` options added to the main job's); each run scores its
# start and every 4th step on the dev split (never the test split) and the table prints the dev nDCG@10 of each
# (direct, reasoning, fused) with its interval and the token rate, from each run's selection.json.
#
#   bash scripts/rs_check.sh runs/main/sft/final runs/rs-check main= token=--no-lm-reasoning \
#       "anchor10=--anchor-weight 10" "lm0=--lm-weight 0"
#
# SEED: the stage's seed (that of the SFT model's run, to repeat the main job's stage: 0). About 6 min a variant on 2
# CPU cores with bf16 units.
set -euo pipefail
SR3=${SR3:-sr3}
PYTHON=${PYTHON:-python}
SFT=${1:?usage: scripts/rs_check.sh SFT_MODEL OUT NAME=OPTIONS...}
OUT=${2:?usage: scripts/rs_check.sh SFT_MODEL OUT NAME=OPTIONS...}
shift 2
mkdir -p "$OUT"
names=()
for variant in "$@"; do
  name=${variant%%=*}
  names+=("$name")
  # shellcheck disable=SC2086  # the variant's options are words
  test -f "$OUT/$name/final/sr3_embedder.json" ||
    $SR3 sft --model "$SFT" --num-queries 1000 --corpus-docs 1000 --steps 8 --batch-size 16 --reasoning-fraction 0.5 \
      --reasoning-samples 4 --keep best --reasoning-temperature 0.5 --lm-weight 0.5 --learning-rate 2e-5 \
      --reasoning-tokens 48 --eval-every 4 --eval-queries 100 --eval-docs 1000 --select-by reasoning \
      --anchor-weight 1 --min-token-rate 0.9 --seed "${SEED:-0}" ${variant#*=} --output-dir "$OUT/$name"
  rm -rf "$OUT/$name"/checkpoint-*
done
$PYTHON - "$OUT" "${names[@]}" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
print("| variant | step | direct | reasoning | fused | token rate |")
print("|---|---:|---:|---:|---:|---:|")
for name in names:
    for h in json.load(open(f"{out}/{name}/selection.json"))["history"]:
        n, i = h["ndcg"], h["intervals"]
        cells = [f"{n[w]:.3f} [{i[w][0]:.3f}, {i[w][1]:.3f}]" for w in ("direct", "reasoning", "fused")]
        print(f"| {name} | {h['step']} | " + " | ".join(cells) + f" | {h['embed_token_rate']:.2f} |")
PY
