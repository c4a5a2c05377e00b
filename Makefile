# geoseg developer commands. Each target creates .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: env test test-quick lint run-default train-default bench gpu-check clean

$(BIN)/geoseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(BIN)/geoseg

env: $(BIN)/geoseg

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# everything, as CI runs it (.ci/run)
test: lint
	$(BIN)/python -m pytest

# the fast loop while editing: every test not marked `slow` (real data, training, clusters)
test-quick: env
	$(BIN)/python -m pytest -m "not slow"

run-default: env
	mkdir -p out
	$(BIN)/geoseg run --bbox -113.10,37.15,-112.95,37.30 --bbox-crs EPSG:4326 \
		--datetime 2015-08-18 --model landcover-landsat \
		--out out/zion_landcover.gpkg --labels out/zion_landcover.tif

train-default: env
	$(BIN)/python -m workflows.train_defaults

bench: env
	$(BIN)/python benchmarks/bench_predict.py

# on a machine with a CUDA device: the GPU tests (skipped elsewhere), then the benchmark on it
gpu-check: env
	$(BIN)/python -m pytest -m gpu
	$(BIN)/python benchmarks/bench_predict.py --device cuda --workers 1 --sizes 4096,8192 --pairs 2

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
