# Two commands set up everything on a fresh machine (Python >= 3.10):
#   make demo   the kit's main job        make test   the whole test suite
# (make test-fast: the unit tests only, about a minute: what to run while editing)
# `make demo` installs only what the kit needs to run (pandas, matplotlib, tqdm, tabulate);
# everything else (JupyterLab, pytest, ...) comes with the first target that needs it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev
# READY: what `setup` provides, everything (other targets may depend on it).
READY  := $(DEV)

.PHONY: setup demo test test-fast book slides handout strip lab bench bench-goals clean

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

setup: $(READY)

demo: $(CORE)
	$(BIN)/acceptlab compare --out out/demo --force

# The test tiers (markers, see tests/conftest.py).  `make test` runs every test, in two
# parts: first those that measure no timing, on $(TEST_WORKERS) pytest-xdist workers side by
# side, then the `serial` ones (they measure scheduling or timing) alone, one at a time.
# Both parts always run; the target fails if either failed (a part that PYTEST_ARGS leaves
# empty, pytest's exit code 5, is no failure).  tests/test_tiers.py checks that every test is
# in exactly one part.  PYTEST_ARGS passes more options to both (-x, -k ...).
TEST_PARALLEL := not serial
TEST_SERIAL   := serial
TEST_FAST     := not system
TEST_WORKERS  ?= 2
PYTEST_ARGS   ?=
test: $(DEV)
	@status=0; \
	echo "== make test, part 1 of 2: the tests that measure no timing, $(TEST_WORKERS) at a time"; \
	$(BIN)/python -m pytest -m "$(TEST_PARALLEL)" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); \
	code=$$?; [ $$code -eq 0 ] || [ $$code -eq 5 ] || status=1; \
	echo "== make test, part 2 of 2: the tests that measure scheduling or timing, one at a time"; \
	$(BIN)/python -m pytest -m "$(TEST_SERIAL)" -p no:xdist $(PYTEST_ARGS); \
	code=$$?; [ $$code -eq 0 ] || [ $$code -eq 5 ] || status=1; \
	exit $$status

# The unit tests: no process, socket, kernel, browser or server started (about a minute).
test-fast: $(DEV)
	$(BIN)/python -m pytest -m "$(TEST_FAST)" $(PYTEST_ARGS)

book: $(DEV)
	$(BIN)/python tools/build_book.py --out build/book

# One reveal.js deck per lesson in build/slides/ (reveal.js from its npm package: needs npm
# once; reuses build/book's executed notebooks when they are fresh).
slides: setup
	$(BIN)/python tools/build_slides.py --out build/slides

# The printable one-page handout: build/handout/handout.html, and handout.pdf when Chromium
# is installed.  HANDOUT=path/to/other.md builds another Markdown file the same way.
HANDOUT ?= docs/handout.md
handout: setup
	$(BIN)/python tools/build_handout.py $(HANDOUT) --out build/handout

# JupyterLab saves outputs into the notebooks; `make strip` removes them (and execution
# counts) from the working copies, keeping cell ids, so git shows only real changes.
strip: setup
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

# JupyterLab on 127.0.0.1, rooted at the repository, so that every link of a lesson opens
# (../docs/sources.md#..., ../data/..., the other lessons); the page it opens, and the address it
# prints, show the first lesson (LAB_START).  Its settings are tools/lab-settings/overrides.json:
# the "Jupyter news?" prompt answered no and no update check (a classroom may have no network).
# RISE's "Render as slideshow" presents a notebook live.  As root, e.g. in a container,
# --allow-root is added; LAB_ARGS passes more options, for example
#   make lab LAB_ARGS="--no-browser --port=8899"
LAB_ARGS ?=
LAB_START ?= notebooks/00_setup_check.ipynb
LAB_AS_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --ServerApp.root_dir="$(CURDIR)" \
	    --LabApp.default_url="/lab/tree/$(LAB_START)" \
	    --LabApp.app_settings_dir="$(CURDIR)/tools/lab-settings" $(LAB_AS_ROOT) $(LAB_ARGS)

bench: $(DEV)
	$(BIN)/python -m bench.run_all

# issue 21's four goals (kit / minimal CPU, log on / off, kit / nginx, lean client / wrk) in one run
bench-goals: $(DEV)
	$(BIN)/python -m bench.run_all --only servers client

clean:
	rm -rf out build .pytest_cache
