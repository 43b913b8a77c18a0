# Two commands: `make run` (set up, then run the demo town) and `make test` (set up, then test).
# Everything lands in .venv; versions come from requirements.lock, so a fresh clone installs
# exactly what was tested.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= $(if $(wildcard config.yaml),config.yaml,config.example.yaml)
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup run test bench lock clean chromium

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The demo's Facebook page and Instagram account come from a fake Graph API on this machine
# (hub/demo/graphapi.py). When the config uses it (HUB_DEMO_GRAPH_URL), `make run` starts it
# in the background, waits until it listens, and stops it when the hub ends.
DEMO_GRAPH_PORT ?= 8790
DEMO_GRAPH_LOG  := $(VENV)/demo-graph.log

run: setup
	@if grep -q HUB_DEMO_GRAPH_URL $(CONFIG); then \
	  $(BIN)/python -m hub.demo.graphapi --port $(DEMO_GRAPH_PORT) --fixtures hub/demo/musterstadt/facebook.json \
	    >$(DEMO_GRAPH_LOG) 2>&1 & graph=$$!; \
	  trap 'kill $$graph 2>/dev/null' EXIT INT TERM; \
	  until grep -q "fake Graph API at" $(DEMO_GRAPH_LOG); do \
	    kill -0 $$graph 2>/dev/null || { cat $(DEMO_GRAPH_LOG); exit 1; }; sleep 0.1; done; \
	  cat $(DEMO_GRAPH_LOG); \
	fi; \
	HUB_DEMO_GRAPH_URL=http://127.0.0.1:$(DEMO_GRAPH_PORT) $(BIN)/hub run -c $(CONFIG) --host $(HOST) --port $(PORT)

# The suite runs twice: today, and with every test's clock a year ahead (--clock-ahead), so
# nothing passes only because of the day it runs on. Four workers on two cores: many tests
# wait on servers and processes. Each worker takes one test at a time from a common queue
# (--dist load --maxschedchunk 1) whose head holds the long crash tests (tests/conftest.py),
# so they run beside the short ones, not alone at the end. The second run leaves out what
# repeats the first on another axis than the date: PostgreSQL (the same code as SQLite), the
# browser (the pages' dates are checked without it), the tests that start and kill
# processes, and those whose dates, if any, are relative to now (marked `timeless`).
# Compiled modules are kept (__pycache__, ignored by git) even where the environment says
# not to write them: the suite starts some hundred Python processes, and each would compile
# the hub's modules and the tests' rewritten asserts again.
test: export PYTHONDONTWRITEBYTECODE =
test: setup chromium
	$(BIN)/python -m pytest -n 4 --dist load --maxschedchunk 1
	$(BIN)/python -m pytest -n 4 --dist load --maxschedchunk 1 -q --clock-ahead 365 -m "not postgres and not browser and not slow and not timeless"

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium (not root?): the browser tests will be skipped"; }

# On demand, never part of `make test`: prints the figures the issues ask for.
bench: setup
	$(BIN)/python tests/benchmarks/bench_parse.py
	$(BIN)/python tests/benchmarks/bench_ingest.py
	$(BIN)/python tests/benchmarks/bench_schedule.py
	$(BIN)/python tests/benchmarks/bench_identity.py
	$(BIN)/python tests/benchmarks/bench_placement.py
	$(BIN)/python tests/benchmarks/bench_facebook.py
	$(BIN)/python tests/benchmarks/bench_website.py
	$(BIN)/python tests/benchmarks/bench_ical.py
	$(BIN)/python tests/benchmarks/bench_listing.py
	$(BIN)/python tests/benchmarks/bench_counting.py
	$(BIN)/python tests/benchmarks/bench_newsletter.py
	$(BIN)/python tests/benchmarks/bench_channels.py
	$(BIN)/python tests/benchmarks/bench_cockpit.py
	$(BIN)/python tests/benchmarks/bench_web.py   # builds 1,000,000 records first (once a day, in /tmp)
	$(BIN)/python tests/benchmarks/bench_claim.py  # the scaled tier's dispatch claim (needs PostgreSQL)
	$(BIN)/python tests/benchmarks/bench_scale.py --compare  # 100,000 sources, 1 then 2 workers (needs PostgreSQL; ~15 min)

# Refresh the pins after changing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/hub-lock && $(PYTHON) -m venv /tmp/hub-lock
	/tmp/hub-lock/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	/tmp/hub-lock/bin/pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache
