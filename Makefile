# fibinet-tutorial: `make run` and `make test` set everything up on their own.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu" for a
# CPU-only torch on machines whose PyPI torch is the large CUDA build
PIP_EXTRA ?=
KERNEL := fibinet-tutorial
STAMP := $(VENV)/.setup-done
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
OUT ?= runs/default

.PHONY: help setup run test unit notebooks-test notebooks lint bench bench-small bench-full bench-monitor bench-fibinetpp bench-models clean
.PHONY: gpu-check gpu-wheels colab-check

help:
	@echo "make run        set up, then train FiBiNET, FiBiNet++, DeepFM and LR on the built-in data"
	@echo "make test       set up, then lint, unit tests and every notebook"
	@echo "make bench      speed and memory benchmarks -> benchmarks/RESULTS.md"
	@echo "make bench-small FiBiNET vs LR on small files -> benchmarks/SMALL_FILES.md"
	@echo "make bench-full data pipeline at full Criteo size -> benchmarks/FULL_DATA.md"
	@echo "make bench-monitor early stopping on AUC vs log loss -> benchmarks/MONITOR.md"
	@echo "make bench-fibinetpp FiBiNET -> FiBiNet++ ablation, small files -> benchmarks/FIBINETPP.md"
	@echo "make bench-models every model over 3 seeds -> benchmarks/MODELS.md, models.json"
	@echo "make notebooks  re-execute every notebook from its .md source, keep outputs"
	@echo "make gpu-check  on a CUDA machine, its own python3: CUDA tests, GPU"
	@echo "                benchmarks, one epoch -> benchmarks/GPU.md (no setup)"
	@echo "make gpu-wheels download the wheels gpu-check needs into .whl/"
	@echo "make colab-check install a wheel of this repo as Colab would, run notebook 1"

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 9), "need Python >= 3.9"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_EXTRA) -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) \
		--display-name "Python 3 (fibinet-tutorial)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m fibinet_tutorial.train --model fibinet fibinetpp deepfm lr --out $(OUT)

test: setup lint unit notebooks-test

lint: setup
	$(PY) -m ruff check .

unit: setup
	$(PY) -m pytest tests

notebooks-test: setup
	$(PY) -m pytest --nbmake --nbmake-kernel=$(KERNEL) --nbmake-timeout=1500 $(NOTEBOOKS)

# The .md files are the source: rebuild each .ipynb from it, execute, clean.
notebooks: setup
	$(PY) tools/notebooks.py build

bench: setup
	$(PY) benchmarks/bench_layers.py > benchmarks/.layers.md
	$(PY) benchmarks/bench_data.py > benchmarks/.data.md
	cat benchmarks/.layers.md benchmarks/.data.md > benchmarks/RESULTS.md
	rm benchmarks/.layers.md benchmarks/.data.md
	cat benchmarks/RESULTS.md

# FiBiNET vs LR on small files (~20 min): the evidence for auto_mlp_weight_decay
# and auto_seeds
bench-small: setup
	$(PY) benchmarks/small_files.py > benchmarks/.small.md
	mv benchmarks/.small.md benchmarks/SMALL_FILES.md
	cat benchmarks/SMALL_FILES.md

# From FiBiNET to FiBiNet++ one change at a time (6 rows x 3 seeds on 150,000
# built-in rows), and FiBiNET's small-file rules tried on FiBiNet++ (~13 min);
# notebook 5 reads benchmarks/fibinetpp.json
bench-fibinetpp: setup
	$(PY) benchmarks/fibinetpp.py --rows 150000 > benchmarks/.fibinetpp.md
	mv benchmarks/.fibinetpp.md benchmarks/FIBINETPP.md
	cat benchmarks/FIBINETPP.md

# Early stopping on AUC, log loss or AUC - log loss, replayed on the same runs
# (~12 min): the evidence for default_hparams()["monitor"]
bench-monitor: setup
	$(PY) benchmarks/monitor.py > benchmarks/.monitor.md
	mv benchmarks/.monitor.md benchmarks/MONITOR.md
	cat benchmarks/MONITOR.md

# Every model of train.MODELS over seeds 0, 1, 2, mean ± sd (~15 min): the
# comparison notebook 4 cites (it reads benchmarks/models.json)
bench-models: setup
	$(PY) benchmarks/models.py > benchmarks/.models.md
	mv benchmarks/.models.md benchmarks/MODELS.md
	cat benchmarks/MODELS.md

# The data pipeline at full Criteo size (45.8M rows): writes an 11 GB file to
# data/full once (~3 min), then reads and preprocesses it (~4 min)
bench-full: setup
	$(PY) benchmarks/bench_data.py --rows 45840617 --dir data/full > benchmarks/.full.md
	mv benchmarks/.full.md benchmarks/FULL_DATA.md
	cat benchmarks/FULL_DATA.md

clean:
	rm -rf $(VENV) runs notebooks/runs .pytest_cache

# On a machine with a CUDA GPU (<= 5 min): the CUDA tests, the layer and
# training-step benchmarks on the GPU and one epoch of the default run ->
# benchmarks/GPU.md. Uses that machine's own python3 and packages, no setup;
# torchkeras comes from .whl/ if missing (`make gpu-wheels` where there is
# network). Without a GPU it says so in one line and exits 0.
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py

gpu-wheels:
	$(PYTHON) benchmarks/gpu_check.py --download-wheels $(GPU_PYTHON_VERSION)

# Install a wheel of this repository the way a Colab notebook installs the
# package (pyproject.toml's ranges, not the lock; torch 2.13.0 preinstalled, as
# Colab ships torch) into a fresh venv, import it, run notebook 1 (~2 min;
# .ci/run runs it after `make test`)
colab-check:
	$(PYTHON) tools/colab_check.py
