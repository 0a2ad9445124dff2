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

DEMO_PORT ?= 18080

demo: setup
	@echo "== webtext demo on the embedded sample, in $(DEMO)/: links -> fetch -> extract -> dedup -> publish -> tokenize"
	$(PY) -m pipeline.sample $(DEMO) $(DEMO_PORT)
	@echo "== links: Reddit submissions -> URLs; fetch: the pages, from a demo server on loopback (so the"
	@echo "== demo turns the address guard off: fetch.allow_private=true); extract: their main text;"
	@echo "== dedup: exact and near duplicates out; publish: corpus/ with manifest, dataset card and plots"
	$(PY) -m pipeline.sample.server $(DEMO_PORT) & server=$$!; trap "kill $$server" EXIT; sleep 1; \
	$(PY) -m pipeline workdir=$(DEMO) stages='[links,fetch,extract,dedup,publish]' \
	  source.files='[$(DEMO)/dumps/RS_sample.zst]' links.partitions=2 fetch.allow_private=true \
	  fetch.hosts="$$(cat $(DEMO)/hosts.txt)" fetch.per_host_delay_s=0.2 \
	  dedup.components_partitions=2 dedup.bucket_ranges=1 dedup.max_rounds=4
	@$(PY) -c "import json; s = json.load(open('$(DEMO)/links/stats.json')); print('links funnel:', s['submissions'], '-> urls:', s['counts'])"
	@$(PY) -c "import json; s = json.load(open('$(DEMO)/fetch/stats.json')); print('fetch:', s['counts'], s['metrics'])"
	@$(PY) -c "import json; s = json.load(open('$(DEMO)/docs/stats.json')); print('extract:', s['counts'], s['metrics'])"
	@$(PY) -c "import json; s = json.load(open('$(DEMO)/dedup/stats.json')); print('dedup:', s['counts'], s['metrics'])"
	@$(PY) -c "import json; m = json.load(open('$(DEMO)/corpus/manifest.json')); print('corpus:', m['documents'], 'documents,', m['tokens'], 'tokens in', len(m['shards']), 'shard(s); card: $(DEMO)/corpus/README.md')"
	$(PY) -m pipeline workdir=$(DEMO) stages='[tokenize]' tokenize.tasks=2 tokenize.val_fraction=0.25
	@$(PY) -c "import json; s = json.load(open('$(DEMO)/tokens/stats.json')); print('tokens:', s['metrics'])"

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
