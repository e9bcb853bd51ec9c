# bulkmail — everything a newcomer needs is `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha256(open('pyproject.toml','rb').read()).hexdigest()[:12])")

.PHONY: install run run-directmail test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Send the example campaign to the embedded sandbox; the mails land in examples/outbox/.
run: $(STAMP)
	rm -f examples/campaign.journal.sqlite* examples/campaign.results.jsonl
	$(BIN)/bulkmail examples/campaign.yaml
	@echo "Open the messages in examples/outbox/ (one .eml per recipient);"
	@echo "per-recipient outcomes are in examples/campaign.results.jsonl."

# The same over Alibaba Cloud DirectMail (SingleSendMail, one signed call per recipient).
run-directmail: $(STAMP)
	rm -f examples/directmail.journal.sqlite* examples/directmail.results.jsonl
	$(BIN)/bulkmail examples/directmail.yaml
	@echo "Open the messages in examples/outbox/ (one .eml per recipient);"
	@echo "per-recipient outcomes are in examples/directmail.results.jsonl."

lint: $(STAMP)
	$(BIN)/ruff check bulkmail tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) examples/outbox examples/*.journal.sqlite* examples/*.results.jsonl
