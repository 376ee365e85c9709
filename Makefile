# The two commands: `make run` and `make test`. Both create and update .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# bjdata (pulled in by crossbar) ships wheels compiled against NumPy 1.x that
# print an ABI traceback when autobahn imports them under NumPy 2. Building it
# from source against the NumPy already in the venv, before anything else pulls
# the wheel, keeps every import silent.
$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel numpy
	$(BIN)/pip install --quiet --no-build-isolation --no-cache-dir --no-binary bjdata "bjdata>=0.6"
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sisock up

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .sisock build *.egg-info
