# The targets the README names. Everything the project needs is installed here,
# never by hand: a fresh clone on a fresh machine runs `make demo` and `make test`.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ASSETS := node_modules/.installed-stamp
# The virtualenv's bin/ first: slipway, and helm (scripts/ensure-helm.sh), for tests and demo.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test unit lint typecheck bench asyncapi system-packages clean

# The sandbox (tools/sandbox) is a second distribution, a development tool the service
# image leaves out; both install editable, and a change to either pyproject reinstalls.
$(STAMP): pyproject.toml tools/sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -e tools/sandbox
	touch $(STAMP)

# The web console's front-end code (htmx, Chart.js; axe-core for its tests), pinned by
# package-lock.json and served from node_modules/ (services/api/console/assets.py).
$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(ASSETS)

# Debian packages the tests and the demo use; installed when missing and we are root.
# Helm (no Debian package) goes into the virtualenv's bin/, which the targets put on PATH.
system-packages: $(STAMP)
	@bash scripts/ensure-system-packages.sh
	@bash scripts/ensure-helm.sh $(VENV)/bin

# The seed's story on this machine (dev deploy, canary + analysis, bad image rolled back
# with a Slack message, git revert), then the sandbox stays up until Ctrl-C.
# Headless, for CI: `slipway demo --once` (exit 0 only if every step went as expected).
demo: $(STAMP) $(ASSETS) system-packages
	$(VENV)/bin/slipway up

# Every layer of tests/ (tests/README.md), against real servers it starts on free ports.
# On TEST_WORKERS processes (pytest-xdist): most tests wait on servers and subprocesses rather
# than the CPU, so three overlap well on two cores. Each worker starts its own PostgreSQL and
# nats-server; a test module stays on one worker (`--dist loadfile`), so its module-scoped
# fixtures start once. `make test TEST_WORKERS=0` runs everything in one process.
TEST_WORKERS ?= 3
test: $(STAMP) $(ASSETS) system-packages
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The unit layer alone: pure, no servers, no system packages; well under 30 s.
unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m benchmarks.eventlog --json

# The event contract (AsyncAPI 3.0), generated from the event catalog; a test checks that
# the committed docs/asyncapi.json is what this writes (docs/events.md).
asyncapi: $(STAMP)
	$(PY) -m shared.events.asyncapi > docs/asyncapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .sandbox node_modules
