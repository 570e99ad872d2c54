# The two commands a newcomer needs: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: install run test bench lint format fuzz audit console-screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/finverse-reco serve --bootstrap

# The bench extra too: the suite covers the evaluation chart and the implicit baselines.
test: $(BENCH_STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/pytest

bench: $(BENCH_STAMP)
	bash scripts/ensure-services.sh
	command -v wrk >/dev/null || bash scripts/ensure-services.sh --install wrk
	$(BIN)/python bench/run_all.py

# Schemathesis at depth against the app's OpenAPI schema: >= 1,000 generated requests, random seed.
# (`make test` runs the same test at smoke size, derandomized.)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=100 FUZZ_MIN_REQUESTS=1000 $(BIN)/pytest tests/integration/api/test_fuzz.py -q -s

# Known vulnerabilities in the installed dependencies. Needs the PyPI JSON API (vulnerability data);
# --strict fails when a package could not be checked, so "could not audit" never reads as "clean".
audit: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,audit]'
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

# The console's browser tests, writing their screenshots over the committed ones in docs/console/.
console-screenshots: $(BENCH_STAMP)
	bash scripts/ensure-services.sh
	FINVERSE_CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest tests/integration/console/test_console_browser.py -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
