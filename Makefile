# webtext: `make demo` runs the flow on the embedded sample, `make test` runs the test suite.
# Both set up .venv first. On a GPU cluster, install the CUDA build of torch instead:
#   make setup TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO ?= demo
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench lint slurm-start slurm-stop clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

DEMO_ARGS ?=

# The whole flow on the embedded sample: links -> fetch -> extract -> dedup -> publish -> tokenize ->
# train gpt2-tiny on CPU -> export to a Hugging Face folder -> sample; a summary at the end.
demo: setup
	$(PY) -m pipeline.sample.demo $(DEMO) $(DEMO_ARGS)

BENCH_ARGS ?=

# Every benchmark beside its baseline, interleaved, in one table (bench/run.py; --full for the long settings).
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

# Two workers (pytest-xdist); the SLURM tests stay together on one of them (tests/conftest.py).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check pipeline model train tests bench

slurm-start:
	bash slurm/local-cluster.sh start

slurm-stop:
	bash slurm/local-cluster.sh stop

clean:
	rm -rf $(DEMO) work .pytest_cache
