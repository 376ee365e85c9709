# The two commands: `make run` and `make test`. Both create and update .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM    ?= npm
# The quicklook page's charting library: pinned in web/package-lock.json,
# fetched from npm at build time and served by the bridge (no CDN at run time).
WEBLOCK := web/node_modules/.package-lock.json
VENDOR  := components/http/static/vendor
ASSETS  := $(VENDOR)/uPlot.iife.min.js $(VENDOR)/uPlot.min.css
# The browser test drives Debian's chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
# The compose file is checked with Debian's docker-compose (no engine needed).
COMPOSE  := /usr/bin/docker-compose
# The InfluxQL answers are compared with Debian's InfluxDB 1.x, run by the tests.
INFLUXD  := /usr/bin/influxd

.PHONY: run test test-fast lint install clean web chromium influxdb compose-check compose-test docs lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# bjdata (pulled in by crossbar) ships wheels compiled against NumPy 1.x that
# print an ABI traceback when autobahn imports them under NumPy 2. Building it
# from source against the NumPy already in the venv, before anything else pulls
# the wheel, keeps every import silent.
#
# Every version comes from constraints.txt, as in the image; `make lock`
# moves them to the newest releases setup.py allows.
$(STAMP): $(BIN)/python setup.py constraints.txt sisock/_m4.c
	$(BIN)/pip install --quiet -c constraints.txt --upgrade pip setuptools wheel numpy
	$(BIN)/pip install --quiet -c constraints.txt --no-build-isolation --no-cache-dir --no-binary bjdata bjdata
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,test,docs]'
	touch $(STAMP)

# Resolve every dependency afresh (newest releases within setup.py's ranges)
# in a throwaway environment and write the versions into constraints.txt.
LOCKENV := .lock-venv
lock:
	rm -rf $(LOCKENV) && $(PYTHON) -m venv $(LOCKENV)
	$(LOCKENV)/bin/pip install --quiet --upgrade pip setuptools wheel numpy
	$(LOCKENV)/bin/pip install --quiet --no-build-isolation --no-cache-dir --no-binary bjdata bjdata
	$(LOCKENV)/bin/pip install --quiet '.[all,test,docs]'
	{ grep '^#' constraints.txt; $(LOCKENV)/bin/pip freeze --all --exclude-editable | grep -v '^sisock=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCKENV) build *.egg-info

# npm ci rewrites node_modules (and its hidden lock file) only when the
# committed lock file or package.json is newer.
$(WEBLOCK): web/package.json web/package-lock.json
	$(NPM) ci --prefix web --no-audit --no-fund
	touch $@

$(VENDOR)/%: $(WEBLOCK)
	mkdir -p $(VENDOR)
	cp web/node_modules/uplot/dist/$* $@

web: $(ASSETS)

$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

chromium: $(CHROMIUM)

$(COMPOSE):
	DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose; }

$(INFLUXD):
	DEBIAN_FRONTEND=noninteractive apt-get install -y influxdb || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y influxdb; }

influxdb: $(INFLUXD)

install: $(STAMP) web

run: $(STAMP) $(ASSETS)
	$(BIN)/sisock up

test: $(STAMP) $(ASSETS) $(CHROMIUM) $(COMPOSE) $(INFLUXD)
	$(BIN)/python -m pytest

# The unit tests alone (no router, database or child process; seconds):
# what tests/conftest.py does not mark `system`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not system and not compose"

# The compose stack built and run on this machine's docker engine
# (tests/test_compose_stack.py): needs `docker` and a running engine.
compose-test: $(STAMP) $(COMPOSE)
	$(BIN)/python -m pytest -m compose --timeout 2400 -s tests/test_compose_stack.py

# The compose stack, checked statically: `docker-compose config` and the
# consistency tests (build contexts, commands, variables, ports, router config).
compose-check: $(STAMP) $(COMPOSE)
	$(BIN)/python -m pytest -q tests/test_compose.py

# The documentation, with every warning an error.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# ruff with the rules the code's `noqa` comments name (ruff.toml), and
# RUF100, so a `noqa` that no longer silences anything is reported too.
lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .sisock build *.egg-info web/node_modules $(VENDOR)
