# Two commands set up everything on a fresh machine (Python >= 3.10):
#   make demo   the kit's main job        make test   the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.installed

.PHONY: setup demo test book lab bench clean

# Re-install whenever the dependency list changes.
$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(READY)

setup: $(READY)

demo: setup
	$(BIN)/acceptlab compare --out out/demo

test: setup
	$(BIN)/python -m pytest

book: setup
	$(BIN)/python tools/build_book.py --out build/book

lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf out build .pytest_cache
