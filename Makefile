# webtext: `make demo` runs the flow on the embedded sample, `make test` runs the test suite.
# Both set up .venv first. On a GPU cluster, install the CUDA build of torch instead:
#   make setup TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO ?= demo
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint slurm-start slurm-stop clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	@echo "== webtext demo: the stages that exist today, on the embedded sample, in $(DEMO)/"
	@echo "== links, fetch, extract, dedup and publish are not built yet: the sample documents"
	@echo "== are written as a corpus shard directly, then the tokenize stage runs on them."
	$(PY) -m pipeline.sample $(DEMO)/corpus
	$(PY) -m pipeline workdir=$(DEMO) stages='[tokenize]' tokenize.tasks=4 tokenize.val_fraction=0.25
	@echo "== token shards (llm.c format) and stats:"
	@ls -l $(DEMO)/tokens/*.bin
	@cat $(DEMO)/tokens/stats.json

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check pipeline model train tests bench

slurm-start:
	bash slurm/local-cluster.sh start

slurm-stop:
	bash slurm/local-cluster.sh stop

clean:
	rm -rf $(DEMO) work .pytest_cache
