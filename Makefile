# webtext: `make demo` runs the flow on the embedded sample, `make test` runs the test suite.
# Both set up .venv first (`make setup`). On a GPU cluster, install the CUDA build of torch instead:
#   make setup TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'
# TORCH is split like shell words and handed to pip, so it can carry pip options (--index-url URL,
# --extra-index-url URL, --no-index --find-links DIR, ...). The venv remembers it in $(VENV)/.torch:
# later `make demo`/`make test` keep that build, and a new TORCH replaces torch (nothing else).

PYTHON ?= python3
VENV ?= .venv
# Unset: the venv's own choice, or the default. From the command line: a new choice.
ifeq ($(origin TORCH),undefined)
TORCH := $(or $(file <$(VENV)/.torch),torch==2.13.0)
endif
DEMO ?= demo
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# TORCH inside single quotes in a recipe.
TORCH_Q = $(subst ','\'',$(strip $(TORCH)))

.PHONY: setup torch demo test bench lint slurm-start slurm-stop clean FORCE

setup: $(VENV)/.installed

# The project with its dev and eval extras, after torch: the constraint file keeps the build chosen. A new TORCH
# later replaces torch alone.
$(VENV)/.installed: pyproject.toml | $(VENV)/.torch-pin
	$(PY) -m pip install --quiet -e '.[dev,eval]' --constraint $(VENV)/.torch-pin
	touch $@

# torch alone, as TORCH says. A different TORCH than the venv's last one uninstalls torch first:
# `torch==2.13.0` is satisfied by an installed 2.13.0+cpu, so pip alone would keep the old build.
# torch's own dependencies stay unless the new build needs other versions. A venv set up before
# .torch existed keeps its torch when TORCH is not given.
torch: $(VENV)/.torch-pin

$(VENV)/.torch-pin: $(VENV)/.torch | $(PY)
	@test -n '$(TORCH_Q)' || { echo "make: TORCH is empty; e.g. TORCH=torch==2.13.0" >&2; exit 1; }
	@if [ -e $@ ] || [ -n "$(filter-out file,$(origin TORCH))" ]; then \
	  if old=$$($(PY) -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null); then \
	    echo "torch: replacing $$old: pip uninstall --yes torch"; \
	    $(PY) -m pip uninstall --quiet --yes torch; \
	  fi; \
	fi
	@echo 'torch: pip install $(TORCH_Q)'
	@printf '%s\n' '$(TORCH_Q)' | xargs $(PY) -m pip install --quiet || { \
	  echo "torch: pip could not install TORCH (kept in $(VENV)/.torch); rerun with another: make setup TORCH='...'" >&2; \
	  exit 1; }
	@$(PY) -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' > $@.tmp
	@mv $@.tmp $@
	@echo "torch: $$(cat $@) in $(VENV)"

# TORCH as last installed; rewritten only when it changes, so an unchanged TORCH installs nothing.
$(VENV)/.torch: FORCE | $(PY)
	@printf '%s\n' '$(TORCH_Q)' | cmp -s - $@ || printf '%s\n' '$(TORCH_Q)' > $@

# The venv, after checking that $(PYTHON) is >= 3.10 and can make one (Debian and Ubuntu ship
# ensurepip, which venv needs, in a separate package).
$(PY):
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { \
	  echo "make setup: '$(PYTHON)' does not run. Install Python >= 3.10 and name it: make setup PYTHON=python3.12" >&2; \
	  exit 1; }; \
	case $$v in 2.*|3.[0-9]) \
	  echo "make setup: $(PYTHON) is Python $$v; webtext needs Python >= 3.10. Install one and name it: make setup PYTHON=python3.12" >&2; \
	  exit 1;; esac; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "make setup: $(PYTHON) (Python $$v) cannot create a virtual environment: its ensurepip module is missing. On Debian/Ubuntu: sudo apt-get install python$$v-venv" >&2; \
	  exit 1; }; \
	echo "$(PYTHON) -m venv $(VENV)"; \
	$(PYTHON) -m venv $(VENV) || { \
	  echo "make setup: '$(PYTHON) -m venv' failed. On Debian/Ubuntu: sudo apt-get install python$$v-venv" >&2; \
	  exit 1; }
	$(PY) -m pip install --quiet --upgrade pip || { rm -f $@; exit 1; }

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
