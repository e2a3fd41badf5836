# Every target bootstraps its own virtualenv: a fresh machine needs only Python 3.10+.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,bench,demo]"
	rm -f $(VENV)/.installed-* && touch $@

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) examples/physics_demo.py

bench: $(STAMP)
	$(PY) -m tests.benchmarks

lint: $(STAMP)
	$(PY) -m ruff check ecs kernels tests examples
	$(PY) -m mypy ecs kernels

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
