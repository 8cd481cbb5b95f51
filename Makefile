# The two commands of the README: `make demo` runs the pipeline, `make test` runs the tests.
# Both install what they need into .venv (pinned by constraints.txt) and fetch Kafka's jars.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck tools locks image-test clean

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
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v tmux >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus tmux; }

# The tests wait on real servers more than they compute (one process keeps 2 cores about a third
# busy), so two workers run them side by side, a file to a worker: each its own broker.
TEST_WORKERS ?= 2

test: lint typecheck tools
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The container image built and run for real, without a Docker daemon: podman with vfs storage
# and runc, a Debian base made by mmdebstrap (tests/ops/test_image.py; several minutes, ~4 GB).
image-test: $(STAMP)
	@command -v podman >/dev/null && command -v mmdebstrap >/dev/null && command -v runc >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    podman buildah runc mmdebstrap uidmap; }
	$(BIN)/pytest tests/ops/test_image.py $(PYTEST_ARGS)

# constraints-runtime.txt: what `pip install .` resolves to from constraints.txt (the image's lock).
locks: $(STAMP)
	$(BIN)/pip install -q --dry-run --ignore-installed -c constraints.txt --report .runtime-report.json .
	$(BIN)/python -c "import json; r = json.load(open('.runtime-report.json')); \
	  pins = sorted((i['metadata']['name'], i['metadata']['version']) for i in r['install'] \
	  if i['metadata']['name'] != 'claimx-flow'); \
	  head = open('constraints-runtime.txt').read().split(chr(10))[:3]; \
	  open('constraints-runtime.txt', 'w').write(chr(10).join(head) + chr(10) \
	  + ''.join(f'{n}=={v}' + chr(10) for n, v in pins))"
	rm -f .runtime-report.json

clean:
	-$(BIN)/claimx stack down --yes
	rm -rf $(VENV) .claimx-stack claimx-data
