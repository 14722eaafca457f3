# Two commands set up everything on a fresh machine (Python >= 3.10):
#   make demo   the kit's main job        make test   the whole test suite
# `make demo` installs only what the kit needs to run (pandas, matplotlib, tqdm, tabulate);
# everything else (JupyterLab, pytest, ...) comes with the first target that needs it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev
# READY: what `setup` provides, everything (other targets may depend on it).
READY  := $(DEV)

.PHONY: setup demo test book lab bench clean

$(BIN)/python:
	@echo "== creating a virtual environment in $(VENV)/"
	$(PYTHON) -m venv $(VENV)

# Re-install whenever the dependency list changes.  pip shows what it downloads: the first
# run takes a minute or so and should not look stuck.
$(CORE): pyproject.toml | $(BIN)/python
	@echo "== installing acceptlab and what it needs to run into $(VENV)/"
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $(CORE)

$(DEV): pyproject.toml $(CORE)
	@echo "== installing the notebook and test tools (JupyterLab, pytest, ...) into $(VENV)/"
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(DEV)

setup: $(DEV)

demo: $(CORE)
	$(BIN)/acceptlab compare --out out/demo --force

test: $(DEV)
	$(BIN)/python -m pytest

book: $(DEV)
	$(BIN)/python tools/build_book.py --out build/book

lab: $(DEV)
	$(BIN)/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks

bench: $(DEV)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf out build .pytest_cache
