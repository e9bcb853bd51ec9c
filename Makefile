# bulkmail — everything a newcomer needs is `make run` and `make test`.
# Three venv flavours share one .venv: `run` installs the runtime only, `test` adds the test
# extras (and a Redis-compatible server for the fleet tests), `bench` the benchmark extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell $(PYTHON) -c "import hashlib;print(hashlib.sha256(open('pyproject.toml','rb').read()).hexdigest()[:12])")

.PHONY: install install-test install-bench run run-directmail test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-$(HASH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-$(HASH): $(VENV)/.runtime-$(HASH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench-$(HASH): $(VENV)/.test-$(HASH)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.runtime-$(HASH)
install-test: $(VENV)/.test-$(HASH)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v unshare >/dev/null || (apt-get update -qq && apt-get install -y -qq util-linux)
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl)
install-bench: $(VENV)/.bench-$(HASH)

# Send the example campaign to the embedded sandbox; the mails land in examples/outbox/.
run: install
	rm -f examples/campaign.journal.sqlite* examples/campaign.results.jsonl
	$(BIN)/bulkmail examples/campaign.yaml
	@echo "Open the messages in examples/outbox/ (one .eml per recipient);"
	@echo "per-recipient outcomes are in examples/campaign.results.jsonl."

# The same over Alibaba Cloud DirectMail (SingleSendMail, one signed call per recipient).
run-directmail: install
	rm -f examples/directmail.journal.sqlite* examples/directmail.results.jsonl
	$(BIN)/bulkmail examples/directmail.yaml
	@echo "Open the messages in examples/outbox/ (one .eml per recipient);"
	@echo "per-recipient outcomes are in examples/directmail.results.jsonl."

lint: install-test
	$(BIN)/ruff check bulkmail tests benchmarks
	$(BIN)/ruff format --check bulkmail tests benchmarks

typecheck: install-test
	$(BIN)/mypy

test: install-test lint typecheck
	$(BIN)/pytest -q

bench: install-bench
	$(BIN)/python -m benchmarks.run all
	$(BIN)/python -m benchmarks.run fleet

clean:
	rm -rf $(VENV) examples/outbox examples/*.journal.sqlite* examples/*.results.jsonl
