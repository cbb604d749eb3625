# rt-blackbox: `make run` (demo on the bundled fixtures) and `make test` work on a fresh machine
# that has Python 3.11 and make; both create the virtualenv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo-store

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/rt-record logs fixtures/logs/realtime.log fixtures/logs/bot.log fixtures/logs/notification.log --tz UTC --store $(DEMO)
	$(BIN)/rt-record logs fixtures/logs/server.log --preset realtime-server --date 2026-11-24 --store $(DEMO)
	$(BIN)/rt-record logs fixtures/logs/realtime_logs_export.json fixtures/logs/realtime_logs_export.csv --source supabase --store $(DEMO)
	$(BIN)/rt-analyze sql "SELECT source, level, count(*) AS records, count(error_code) AS with_error_code FROM logs GROUP BY ALL ORDER BY source, level" --store $(DEMO)
	$(BIN)/rt-analyze sql "SELECT ts, source, error_code, message FROM logs WHERE level IN ('error', 'critical') ORDER BY ts LIMIT 15" --store $(DEMO)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check recorder analyzer tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis
