# The two commands of the README: `make demo` runs the pipeline, `make test` runs the tests.
# Both install what they need into .venv (pinned by constraints.txt) and fetch Kafka's jars.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck tools clean

# The monitoring tests run a real Prometheus and promtool (Debian's `prometheus` package);
# installed only when missing. CI runs as root; elsewhere sudo is used.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/claimx demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

test: lint typecheck tools
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	-$(BIN)/claimx stack down
	rm -rf $(VENV) .claimx-stack claimx-data
