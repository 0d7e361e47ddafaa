# The two entry points (see README): `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := demo_data
SYNTHETIC := $(PY) -m multiview.synthetic

.PHONY: demo demo-data studies-demo test install lint clean

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

# The MVImgNet paper's studies end to end on embedded synthetic data (README: "The studies on synthetic data"):
# IBRNet where-to-pretrain (Tables 3/4), the DTU fraction sweep (Table 5), JDACS more-data-more-power (Fig. 5).
# Each is resumable; the tables and plots land in tables/demo/.
studies-demo: $(STAMP)
	$(PY) eval/run_pretrain_study.py --config configs/studies/ibrnet_where_demo.txt --no-child_output
	$(PY) eval/run_dtu_sweep.py --config configs/sweeps/dtu_fraction_demo.txt --no-child_output
	$(PY) eval/run_pretrain_study.py --config configs/studies/jdacs_data_size_demo.txt --no-child_output
	$(PY) eval/make_tables.py studies/ibrnet_where_demo sweeps/dtu_fraction_demo studies/jdacs_data_size_demo --out tables/demo

clean:
	rm -rf $(VENV) $(DEMO_DIR) runs
