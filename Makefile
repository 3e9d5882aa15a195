# keras_seq — every target creates or reuses the project's virtual environment itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev
DATA ?= ../shared/data
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test train export verify bench lint clean

# $(call need_311,PYTHON,HINT): refuse an interpreter older than requires-python, in one line.
need_311 = @$(1) -c 'import sys; v = sys.version_info; sys.exit(v < (3, 11) and \
  f"keras_seq needs Python >= 3.11; {sys.executable} is {v[0]}.{v[1]}: $(2)")'

# A venv whose creation failed is removed, so that the next `make` starts afresh.
$(VENV)/bin/python:
	$(call need_311,$(PYTHON),run make with PYTHON=python3.11)
	$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip || { rm -rf $(VENV); exit 1; }

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(call need_311,$(PY),remove it with make clean)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(STAMP)  ## create/reuse .venv and install keras_seq with the $(EXTRAS) extras

test: install  ## the test suite (2 processes)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# Without --run-dir, train resumes an unfinished (killed) dates run, else starts a new one;
# export then takes the latest finished one as exported/dates' next version. (Killed in the
# export, the run is finished: `make export` exports it; repeating `make train` trains anew.)
train: install  ## train the default recipe (synthetic dates, no download) and export it
	$(VENV)/bin/keras-seq train dates && \
	$(VENV)/bin/keras-seq export --all-latest runs/dates --out exported

export: install  ## export the latest finished run of every trained recipe into exported/
	$(VENV)/bin/keras-seq export --all-latest runs --out exported

verify: install  ## compare every exported artifact with its Keras model
	@status=0; for d in exported/*/; do \
	  if [ -f "$$d/metadata.json" ]; then $(VENV)/bin/keras-seq verify "$$d" || status=1; fi; \
	done; exit $$status

bench: install  ## speed and pipeline benchmarks (figures, not gates)
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/pipelines.py --data-dir $(DATA)

lint: install
	$(VENV)/bin/ruff check keras_seq pipelines tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
