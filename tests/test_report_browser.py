"""The HTML report (``rt-analyze report --format html``) in a real headless Chromium.

The store is made with the real recorder: frames through ``recorder.capture.FrameRecorder`` (the
proxy's and the recording client's capture path: redaction, batched decode, the write-ahead log)
and log lines through the ``rt-record logs`` command; the report comes from the ``rt-analyze``
command. Frame payloads and log lines carry planted markup (a ``<script>``, an ``<img onerror>``,
a ``</script>`` breakout inside a JSON string). The page is then opened from its file in Chromium
(Debian's ``/usr/bin/chromium`` driven by Playwright, never a downloaded browser) and must:

* make no network request at all besides loading its own file, and log no console or page error;
* draw its timeline (bars and incident bands with a real rendered size) and show the per-cause
  counts and the evidence tables;
* run none of the planted markup, and show it as text.

A control test breaks the escaping on purpose and checks that the same probes catch it, so a
green run means the report is safe, not that the probes are blind.

``make screenshot`` uses :func:`screenshot` through this file's ``__main__``::

    .venv/bin/python tests/test_report_browser.py report.html report.png
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script by `make screenshot`
    sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("RT_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = (
    f"Chromium not found at {CHROMIUM}: the browser tests need Debian's chromium, install it with "
    "`apt-get install -y --no-install-recommends chromium` (.ci/run does this in CI), "
    "or point RT_CHROMIUM at a Chromium binary"
)
# No first-run, sync, component updates or background fetches: this machine has no route to
# Google's hosts, and the page's own requests must be the only ones worth recording.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TOPIC = "realtime:public:orders"

# Each planted string sets a flag and raises a dialog if it ever runs.
PLANTED_FRAME = [
    "<script>window.__rt_pwned='frame-script';alert('frame-script')</script>",
    "<img src=x onerror=\"window.__rt_pwned='frame-img';alert('frame-img')\">",
    "</script><script>window.__rt_pwned='frame-breakout';alert('frame-breakout')</script>",
]
PLANTED_LOG = [
    "<script>window.__rt_pwned='log-script';alert('log-script')</script>",
    "<img src=x onerror=\"window.__rt_pwned='log-img';alert('log-img')\">",
    "</script><script>window.__rt_pwned='log-breakout'</script>",
]
# how each appears in the report: frame evidence shows the payload as JSON text, log lines as read
SHOWN = [json.dumps(p)[1:-1] for p in PLANTED_FRAME] + PLANTED_LOG


# ---- the browser -------------------------------------------------------------------------------


@dataclass
class PageRun:
    """What one page load did: every request, console message, page error and dialog."""

    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url]


def launch_chromium(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(INSTALL_HINT)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def open_report(browser, path: Path, *, width: int = 1280):
    """Open ``path`` in a fresh context, recording everything; returns ``(page, PageRun)``.

    Requests other than the file itself are recorded and then aborted, so a page that tried to
    reach out fails the test quickly instead of hanging on this machine's closed network.
    """
    run = PageRun(url=path.resolve().as_uri())
    context = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
    context.on("request", lambda r: run.requests.append(r.url))

    def route(r):
        if r.request.url == run.url:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: run.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda err: run.page_errors.append(str(err)))

    def dialog(d):
        run.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(run.url, wait_until="load")
    page.wait_for_timeout(200)  # let late events (img onerror, timers) fire before we look
    return page, run


def screenshot(report_html: Path, png: Path, browser=None) -> Path:
    """Render ``report_html`` in headless Chromium and save a full-page PNG to ``png``.

    Refuses (RuntimeError) when the page asks the network for anything or logs an error.
    """
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = launch_chromium(p)
            try:
                return screenshot(report_html, png, own)
            finally:
                own.close()
    page, run = open_report(browser, report_html)
    try:
        problems = run.foreign_requests + run.console_errors + run.page_errors
        if problems:
            raise RuntimeError(f"{report_html}: the page misbehaved: {problems}")
        page.screenshot(path=str(png), full_page=True)
    finally:
        page.context.close()
    return png


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (it drives Debian's /usr/bin/chromium)")
    if not Path(CHROMIUM).exists():
        pytest.fail(INSTALL_HINT)
    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


# ---- a store with planted markup, made by the real recorder ------------------------------------


def _python_log_line(ts: dt.datetime, logger: str, level: str, message: str) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S},{ts.microsecond // 1000:03d} - {logger} - {level} - {message}"


def _change(record: dict, errors=None) -> str:
    data = {"columns": [{"name": "id", "type": "int8"}, {"name": "note", "type": "text"}],
            "commit_timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "errors": errors, "record": record, "old_record": {"id": record.get("id", 1)},
            "schema": "public", "table": "orders", "type": "UPDATE"}
    return json.dumps({"event": "postgres_changes", "payload": {"data": data, "ids": [1]},
                       "ref": None, "topic": TOPIC})


def make_planted_store(tmp: Path) -> Path:
    """Frames and logs of a short session whose payloads and log lines carry planted markup."""
    from recorder.capture import FrameRecorder

    store = tmp / "store"
    recorder = FrameRecorder(str(store), "browser-test", "proxy").start()
    session = recorder.session("1.0.0")
    stamps = []

    def step(pause: float = 0.05) -> None:
        time.sleep(pause)
        stamps.append(dt.datetime.now(dt.UTC))

    session.opened("ws://127.0.0.1:4000/realtime/v1/websocket?vsn=1.0.0")
    join = {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "orders"}]}}
    session.frame("out", json.dumps({"event": "phx_join", "payload": join, "ref": "1", "join_ref": "1", "topic": TOPIC}))
    reply = {"response": {"postgres_changes": [{"event": "*", "id": 1, "schema": "public", "table": "orders"}]},
             "status": "ok"}
    session.frame("in", json.dumps({"event": "phx_reply", "payload": reply, "ref": "1", "topic": TOPIC}))
    step()
    for i in range(12):  # ordinary traffic for the chart
        session.frame("in", _change({"id": 100 + i, "note": f"order {i}"}))
        step(0.03)
    # a change the server cut down (413): a payload_too_large incident whose evidence is this frame
    session.frame("in", _change({"id": 7, "note": " ".join(PLANTED_FRAME)}, errors=["Error 413: Payload Too Large"]))
    step()
    # a change with an empty record: invalid_payload, again shown with its payload
    session.frame("in", _change({}))
    step()
    for i in range(6):
        session.frame("in", _change({"id": 200 + i, "note": f"later {i}"}))
        step(0.03)
    session.closed("in", 1006, "</script><script>alert('close-reason')</script>")
    step()
    stats = recorder.close()
    assert stats.failure is None and stats.recorded >= 20, stats

    log = tmp / "bot.log"
    lines = [
        _python_log_line(stamps[0], "bot.main", "INFO", "subscribed to public:orders"),
        _python_log_line(stamps[5], "bot.orders", "ERROR", f"could not process change: {PLANTED_LOG[0]}"),
        _python_log_line(stamps[9], "bot.orders", "ERROR", f"bad note {PLANTED_LOG[1]} in order 7"),
        _python_log_line(stamps[14], "bot.notify", "ERROR", f'admin message failed: {{"text": "{PLANTED_LOG[2]}"}}'),
        _python_log_line(stamps[-1], "bot.main", "WARNING", "realtime disconnected, falling back to polling"),
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "recorder.cli", "logs", str(log), "--tz", "UTC", "--store", str(store),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return store


def render_report(store: Path, target: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "analyzer.cli", "report", "--store", str(store), "--format", "html",
                           "--output", str(target)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return target


@pytest.fixture(scope="module")
def planted_report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    return render_report(make_planted_store(tmp), tmp / "report.html")


# ---- the tests ---------------------------------------------------------------------------------


def test_renders_offline_without_errors(browser, planted_report):
    page, run = open_report(browser, planted_report)
    try:
        assert run.requests == [run.url]  # the file itself, nothing else
        assert run.console_errors == [] and run.page_errors == []
        assert page.title().startswith(("ESCALATE", "nothing to escalate"))
    finally:
        page.context.close()


def test_planted_markup_does_not_run_and_shows_as_text(browser, planted_report):
    page, run = open_report(browser, planted_report)
    try:
        assert page.evaluate("window.__rt_pwned") is None
        assert run.dialogs == []
        assert run.foreign_requests == []  # an <img src=x> that became an element would ask for file:///.../x
        assert page.evaluate("document.scripts.length") == 0
        assert page.evaluate("document.images.length") == 0
        assert page.evaluate("document.querySelectorAll('[onerror], [onload], [onclick]').length") == 0
        text = page.evaluate("document.body.innerText")
        source = planted_report.read_text(encoding="utf-8")
        for shown in SHOWN:
            assert shown in text, shown  # shown verbatim, as text
            assert shown not in source and html.escape(shown) in source, shown
    finally:
        page.context.close()


def test_chart_is_drawn_with_counts_and_evidence(browser, planted_report):
    page, run = open_report(browser, planted_report)
    try:
        chart = page.locator("svg.timeline")
        assert chart.count() == 1
        box = chart.bounding_box()
        assert box and box["width"] >= 600 and box["height"] >= 150

        def drawn(selector: str) -> list[dict]:
            return page.evaluate(
                """sel => [...document.querySelectorAll(sel)].map(el => {
                       const r = el.getBoundingClientRect();
                       return {w: r.width, h: r.height, fill: getComputedStyle(el).fill};
                   }).filter(r => r.w > 0 && r.h > 0 && r.fill !== 'none')""",
                selector,
            )

        frames, errors, bands = drawn("svg.timeline .bar-frames"), drawn("svg.timeline .bar-errors"), \
            drawn("svg.timeline .incident")
        assert len(frames) >= 3, frames  # the traffic spreads over several buckets
        assert len(errors) >= 1, errors
        incidents = page.locator("div.inc")
        assert len(bands) == incidents.count() >= 2
        assert max(r["h"] for r in frames) >= 60  # the busiest bucket fills most of the plot

        causes = dict(page.evaluate(
            "[...document.querySelectorAll('table.causes tr')].slice(1).map(tr => "
            "[tr.cells[0].innerText, Number(tr.cells[1].innerText)])"
        ))
        assert causes["payload_too_large"] == 1 and causes["invalid_payload"] >= 1 and causes["network"] >= 1
        assert sum(causes.values()) == incidents.count()
        for i in range(incidents.count()):
            rows = incidents.nth(i).locator("table.evidence tr")
            assert rows.count() >= 2  # a header and at least one evidence row
        too_large = page.locator("div.inc", has_text="payload_too_large")
        assert SHOWN[0] in too_large.locator("table.evidence").inner_text()
    finally:
        page.context.close()


def test_the_probes_catch_broken_escaping(browser, planted_report, tmp_path):
    """Undo the escaping of the planted markup: the same probes must see it run or be blocked."""
    source = planted_report.read_text(encoding="utf-8")
    broken = source
    for shown in SHOWN:
        broken = broken.replace(html.escape(shown), shown)
    assert broken != source
    without_csp = tmp_path / "no-csp.html"
    without_csp.write_text(_strip_csp(broken), encoding="utf-8")
    page, run = open_report(browser, without_csp)
    try:
        assert page.evaluate("window.__rt_pwned") is not None
        assert run.dialogs
        assert any(u.endswith("/x") for u in run.foreign_requests)
    finally:
        page.context.close()
    # with the report's Content-Security-Policy kept, even broken escaping runs nothing
    with_csp = tmp_path / "csp.html"
    with_csp.write_text(broken, encoding="utf-8")
    page, run = open_report(browser, with_csp)
    try:
        assert page.evaluate("window.__rt_pwned") is None and run.dialogs == []
        assert page.evaluate("document.scripts.length") > 0  # the markup did become elements...
        blocked = "\n".join(run.console_errors)  # ...that the policy stopped, and said so
        assert "Executing inline script violates" in blocked and "Loading the image" in blocked
    finally:
        page.context.close()


def _strip_csp(text: str) -> str:
    start = text.index('<meta http-equiv="Content-Security-Policy"')
    return text[:start] + text[text.index(">", start) + 1:]


def test_screenshot(browser, planted_report, tmp_path):
    png = screenshot(planted_report, tmp_path / "report.png", browser)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/test_report_browser.py REPORT.html OUT.png")
    try:
        out = screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    except (RuntimeError, OSError) as err:
        sys.exit(f"screenshot: {err}")
    print(f"wrote {out}")
