# Two entry points: `make run` (the demo) and `make test` (the whole suite).
# Both create or refresh .venv idempotently: packages are reinstalled only when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

HOST ?= 127.0.0.1
PORT ?= 8080
MOCKS_PORT ?= 8090
SUBSCRIBER_PORT ?= 8091

.PHONY: run test venv bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/wraparound demo --host $(HOST) --port $(PORT) --mocks-port $(MOCKS_PORT) \
		--subscriber-port $(SUBSCRIBER_PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
