# The two commands a newcomer needs (README.md):  `make demo`  and  `make test`.
# Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip install --disable-pip-version-check --progress-bar on -c constraints.txt
OUT    ?= demo_out

.PHONY: demo test test-fast sync-check export readme docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime install: what `cyclr demo` needs and nothing more.
$(VENV)/.run-installed: settings.ini setup.py constraints.txt | $(BIN)/python
	@echo "Installing cyclr and its runtime dependencies into $(VENV) (first run only; a few minutes)"
	$(PIP) -e .
	touch $@

# Development install: the pinned nbdev 2 toolchain and the test stack on top.
$(VENV)/.dev-installed: settings.ini setup.py constraints.txt | $(BIN)/python
	@echo "Installing cyclr with the dev tools (nbdev, Jupyter, pytest, Lightning, Playwright) into $(VENV) (first run only; several minutes)"
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.run-installed

demo: $(VENV)/.run-installed
	$(BIN)/cyclr demo --out $(OUT)

test: $(VENV)/.dev-installed sync-check
	$(BIN)/nbdev_test --n_workers 2 --do_print
	$(BIN)/python -m pytest -q tests

# Fails when the notebooks and cyclr/ (or README.md) disagree: nbdev_export and the README
# script are run on a copy and compared.
sync-check: $(VENV)/.dev-installed
	$(BIN)/python tools/check_sync.py

# Developer helpers: regenerate the package and README from the notebooks.
export: $(VENV)/.dev-installed
	$(BIN)/nbdev_export
	$(BIN)/python tools/make_readme.py

# The documentation site from the notebooks (nbconvert pages and API pages with parameter tables): _docs/index.html
docs: $(VENV)/.dev-installed
	$(BIN)/python tools/make_docs.py _docs

bench: $(VENV)/.dev-installed
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
