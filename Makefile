# colourise_tf — every target creates its own virtualenv on first use.
#   make test                 fast tests (what CI runs)
#   make test-large           the slow tests too
#   make lint                 ruff: formatting, lint rules and import order (pyproject.toml)
#   make train                main job on the embedded sample photos (CPU, < 15 min)
#   make train PRESET=gorriz-ibn-sn-md DATASET=imagenet2012 DATA_DIR=/data MANUAL_DIR=/data/manual STRATEGY=mirrored TF_EXTRA=gpu
#   make bench                pipeline and train-step benchmarks (JSON in benchmarks/results/)

PYTHON   ?= python3
TF_EXTRA ?= cpu
# One virtualenv per TensorFlow build: tensorflow-cpu and tensorflow[and-cuda] must not
# share one (.venv for the CPU build, .venv-gpu for TF_EXTRA=gpu).
VENV     ?= $(if $(filter cpu,$(TF_EXTRA)),.venv,.venv-$(TF_EXTRA))
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed-$(TF_EXTRA)

PRESET    ?= gorriz-ibn-sn-md
DATASET   ?= samples
WORKDIR   ?= runs/$(PRESET)
STRATEGY  ?= default
PRECISION ?= auto
DATA_DIR  ?=
MANUAL_DIR ?=
# The CPU-sized schedule `make train` uses on the bundled photos (same architecture,
# 128x128 instead of 256x256 so that it finishes in minutes on two cores). Any other
# DATASET (e.g. imagenet2012) trains on the preset's own schedule; OVERRIDES="..."
# replaces either.
CPU_SCHEDULE := model.image_size=128 data.batch_size=4 train.steps=400 \
  train.checkpoint_every=50 train.log_every=5 train.image_every=50
OVERRIDES ?= $(if $(filter samples,$(DATASET)),$(CPU_SCHEDULE))

.PHONY: install test test-large test-large-only lint format train export eval bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(TF_EXTRA),dev]"
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -m "not large" -q

test-large: $(STAMP)
	$(BIN)/python -m pytest -q

test-large-only: $(STAMP)
	$(BIN)/python -m pytest -m large -q

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# Rewrites the code: formatting and the fixable lint findings (import order, ...).
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: $(STAMP)
	$(BIN)/colourise-train --preset $(PRESET) --dataset $(DATASET) --workdir $(WORKDIR) \
	  --strategy $(STRATEGY) --precision $(PRECISION) $(if $(SPLIT),--split $(SPLIT)) \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(MANUAL_DIR),--manual-dir $(MANUAL_DIR)) \
	  $(OVERRIDES)

# Export: TF Serving layout $(EXPORT_DIR)/<preset>/<version>/ + models.config, and the
# four TFLite variants in $(EXPORT_DIR)/tflite/.
EXPORT_DIR ?= exports
export: $(STAMP)
	$(BIN)/colourise-export savedmodel $(WORKDIR) --base-dir $(EXPORT_DIR)/$(PRESET) --model-name colourise
	$(BIN)/colourise-export tflite $(WORKDIR) --out-dir $(EXPORT_DIR)/tflite

# Evaluation: EVAL_MODELS may list several run dirs / SavedModels / .tflite files.
EVAL_MODELS ?= $(WORKDIR)
EVAL_OUT    ?= $(WORKDIR)/eval
PERCEPTUAL  ?= imagenet
SPLIT       ?=
LIMIT       ?=
eval: $(STAMP)
	$(BIN)/colourise-eval $(foreach m,$(EVAL_MODELS),--model $(m)) --dataset $(DATASET) \
	  $(if $(SPLIT),--split $(SPLIT)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	  $(if $(MANUAL_DIR),--manual-dir $(MANUAL_DIR)) $(if $(LIMIT),--limit $(LIMIT)) \
	  --perceptual-weights $(PERCEPTUAL) --out $(EVAL_OUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf .venv .venv-* runs exports .pytest_cache
