# ichscan: two commands on a fresh machine.
#   make demo   set up .venv, synthesise phantom head CT, index, prepare, train, predict, evaluate
#   make test   set up .venv and run the tests
#   make fuzz   the fuzz suite at a larger scale (tens of thousands of mutants, many kills)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ICHSCAN := $(BIN)/ichscan
DEMO ?= demo-output
DEMO_STUDIES ?= 400
DEMO_HOLDOUT ?= 30
DEMO_SIZE ?= 128
JOBS ?= 2

.PHONY: demo test fuzz bench clean

# constraints.txt pins torch/torchvision to the build on this machine's disk (nothing pulls another).
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The demo starts from nothing each time: phantom studies at 128² (rich in hemorrhages so that a
# 2-core run has enough positives; many studies at a small matrix give the model more distinct
# lesions than few at a large one), a 128² cache, the small model of configs/demo.yaml, then
# prediction and evaluation on held-out phantom studies generated with another seed.
demo: $(BIN)/.installed
	rm -rf $(DEMO)
	$(ICHSCAN) synth -o $(DEMO)/train-dicom --studies $(DEMO_STUDIES) --seed 0 --size $(DEMO_SIZE) \
		--positive-fraction 0.8 --boost epidural=4 --workers $(JOBS) --preview
	$(ICHSCAN) index $(DEMO)/train-dicom --labels $(DEMO)/train-dicom/train.csv -o $(DEMO)/train.parquet
	$(ICHSCAN) stats $(DEMO)/train.parquet -o $(DEMO)/stats
	$(ICHSCAN) prepare $(DEMO)/train.parquet -o $(DEMO)/cache --size $(DEMO_SIZE)
	$(ICHSCAN) train --config configs/demo.yaml --set data.cache_dir=$(DEMO)/cache --set output_dir=$(DEMO)/runs
	$(ICHSCAN) synth -o $(DEMO)/holdout-dicom --studies $(DEMO_HOLDOUT) --seed 1 --size $(DEMO_SIZE) \
		--positive-fraction 0.5 --workers $(JOBS)
	$(ICHSCAN) predict --model $(DEMO)/runs/demo $(DEMO)/holdout-dicom -o $(DEMO)/predictions
	$(ICHSCAN) evaluate $(DEMO)/predictions/slices.parquet --labels $(DEMO)/holdout-dicom/train.csv -o $(DEMO)/report

test: $(BIN)/.installed
	$(BIN)/python -m pytest -n $(JOBS) -q

# FUZZ_SCALE multiplies tests/fuzz's counts: 1,500 mutants → 15,000, 4 prepare kills over 40
# series → 40 kills over 100 series, 1 predict kill → 10 (about 15 minutes on 2 cores).
FUZZ_SCALE ?= 10
fuzz: $(BIN)/.installed
	FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/python -m pytest tests/fuzz -p no:xdist -q -W ignore::UserWarning

# Every benchmark with the arguments of bench/run.py's table (the ones docs/BENCHMARKS.md quotes);
# `make bench BENCH="prepare loader"` runs some of them.
BENCH ?=
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py $(BENCH)
	$(BIN)/python bench/collect.py docs/bench docs/BENCHMARKS.md

clean:
	rm -rf $(DEMO) .pytest_cache
