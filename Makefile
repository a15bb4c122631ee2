# Every target installs what it needs: uv (from PyPI, if missing), then the locked environment in .venv.
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen

.PHONY: setup test lint format bench demo clean

setup: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

test: setup
	$(RUN) pytest

lint: setup
	$(RUN) ruff check operator tests
	$(RUN) ruff format --check operator tests
	$(RUN) mypy

format: setup
	$(RUN) ruff format operator tests
	$(RUN) ruff check --fix operator tests

bench: setup
	@mkdir -p .bench
	$(RUN) deltaingest bench writer --output .bench/writer.json

demo: setup
	$(RUN) deltaingest demo --table .demo/events

clean:
	rm -rf .venv .bench .demo .pytest_cache .mypy_cache .ruff_cache
