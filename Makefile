# The two entry points (see README): `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := demo_data
SYNTHETIC := $(PY) -m multiview.synthetic

.PHONY: demo demo-data test install lint clean

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

# The embedded synthetic data: every format (as the readers expect it), plus the demo training sets.
demo-data: $(STAMP)
	$(SYNTHETIC) --format all --out $(DEMO_DIR)/formats --scenes 2 --views 30 --size 128x160 --seed 0
	$(SYNTHETIC) --format mvimgnet --out $(DEMO_DIR)/mvimgnet --scenes 8 --views 30 --size 64x80 --seed 0
	$(SYNTHETIC) --format mvimgnet --out $(DEMO_DIR)/mvimgnet_unseen --scenes 2 --views 30 --size 64x80 --seed 1000
	$(SYNTHETIC) --format dtu_train --out $(DEMO_DIR)/dtu --views 16 --size 128x160 --scan_ids 2 6 7 8 1 4 --seed 0

# The main jobs on that data: IBRNet (validated on unseen scenes) and MVSNet/JDACS (validated on held-out scans).
demo: demo-data
	$(PY) train_ibrnet.py --config configs/ibrnet/demo.txt
	$(PY) -m ibrnet.render --run runs/ibrnet_demo --out runs/ibrnet_demo/render --views 0 --num_frames 24 --format gif
	$(PY) train_jdacs.py --config configs/jdacs/demo.txt
	$(PY) -m jdacs.evaluate --run runs/jdacs_demo --split test

clean:
	rm -rf $(VENV) $(DEMO_DIR) runs
