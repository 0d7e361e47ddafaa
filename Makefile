# The two entry points (see README): `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_data

.PHONY: demo test install lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.py pyproject.toml
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -q

demo: $(STAMP)
	$(PY) -m multiview.synthetic --format all --out $(DEMO_DIR) --scenes 2 --views 30 --size 128x160 --seed 0

clean:
	rm -rf $(VENV) $(DEMO_DIR)
