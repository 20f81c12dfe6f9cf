# The two commands of README.md: `make demo` (the pipeline end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

.PHONY: setup services demo test bench lint docs clean

$(BIN)/anime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/anime

services:
	./scripts/ensure-services.sh

demo: setup services ## Render one shot of Kai Nakamura through all four services.
	$(BIN)/anime demo

test: setup services ## Unit, integration and end-to-end tests on real RabbitMQ/PostgreSQL.
	$(BIN)/pytest

bench: setup services ## Throughput, latency, overhead, utilization, burst, footprint (docs/performance.md); BENCH_ARGS=--quick
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services comfysim cli

docs: setup ## Regenerate the AsyncAPI and JSON Schema documents in docs/.
	$(BIN)/anime docs generate

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
