# rt-blackbox: `make run` (demo on the bundled fixtures) and `make test` work on a fresh machine
# that has Python 3.11 and make; both create the virtualenv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo-store
REPORT := report.html
DAY    := fixtures/scenarios/incident_day

.PHONY: install run test lint bench clean screenshot

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The demo: one incident day recorded with the official client through our proxy (see
# fixtures/scenarios/README.md). Its logs go through `rt-record logs`, its frames are appended from
# the committed recording; report/validate exit 1 when something escalates or is invalid.
run: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/rt-record logs $(DAY)/logs/realtime.log $(DAY)/logs/bot.log $(DAY)/logs/notification.log $(DAY)/logs/server.log --tz UTC --store $(DEMO)
	$(BIN)/python fixtures/scenarios/make_fixtures.py --import-frames incident_day $(DEMO)
	$(BIN)/rt-replay validate --store $(DEMO) || test $$? -eq 1
	$(BIN)/rt-analyze report --store $(DEMO) || test $$? -eq 1
	$(BIN)/rt-analyze report --store $(DEMO) --format html --output $(REPORT) || test $$? -eq 1
	$(BIN)/rt-analyze status --store $(DEMO)
	$(BIN)/rt-analyze stats --store $(DEMO)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# report.png: the HTML report of the demo store (made by `make run` when missing), in headless Chromium
screenshot: $(STAMP)
	test -d $(DEMO) || $(MAKE) run
	$(BIN)/rt-analyze report --store $(DEMO) --format html --output $(REPORT) || test $$? -eq 1
	$(BIN)/python tests/test_report_browser.py $(REPORT) report.png

lint: $(STAMP)
	$(BIN)/ruff check recorder analyzer tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis
