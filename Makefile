# Two commands for a fresh Debian machine with Python 3.11:
#   make run    install (Python packages; the native send path, built with
#               Debian's gcc; Debian's CJK fonts for the charts) and start the
#               service on its embedded defaults
#   make test   install test needs (Chromium, ffmpeg) and run the whole suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-test system-test-deps native bench bench-deps bench-janus clean

run: install
	scripts/install-system-deps --runtime
	$(BIN)/zhixing serve

test: install-test
	scripts/run-tests

lint: install-test
	$(BIN)/ruff check streaming recordings classroom web tests bench
	$(BIN)/mypy

install: $(VENV)/.installed native
install-test: system-test-deps $(VENV)/.installed-test native

$(VENV)/bin/python:
	scripts/ensure-venv $(PYTHON) $(VENV)

$(VENV)/.installed: pyproject.toml $(VENV)/bin/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The native send path (streaming/rtp_send.c), compiled next to its source
# with the compiler and Python headers that --build installs.
native: $(VENV)/.installed
	scripts/install-system-deps --build
	$(BIN)/python -m streaming.rtp_send_build

system-test-deps:
	scripts/install-system-deps

bench: install-test
	$(BIN)/python -m bench.relay

bench-deps:
	scripts/install-bench-deps

# As root: it runs in a network namespace of its own (this relay against Janus).
bench-janus: install-test bench-deps
	$(BIN)/python -m bench.janus

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
