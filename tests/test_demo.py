"""The `make run` demo and the incident_day recording it is built from.

fixtures/scenarios/incident_day is one real recording (the official client through the recording
proxy against the scripted mock server, fixtures/scenarios/make_fixtures.py) in which every cause
of design.md happens once among healthy traffic, and the database stays unreachable for 5.5
minutes. `make run` ingests its log files with `rt-record logs`, imports its frames, validates,
and prints the report, status and stats; these tests run that target for real (with the demo
store and report.html in a temporary directory) and compare what it built with the labels.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analyzer.report import build_report
from recorder.store import open_store

ROOT = Path(__file__).resolve().parents[1]
DAY = ROOT / "fixtures" / "scenarios" / "incident_day"
EXPECTED = json.loads((DAY / "expected.json").read_text())
CAUSES = ("payload_missing", "invalid_payload", "payload_too_large", "network", "subscription_race",
          "subscription_failure", "rls", "auth", "db_connectivity")  # design.md, "Incident report"


def labels(incidents) -> Counter:
    return Counter((i["cause"], i["detail"], i["count"], tuple(sorted(i["topics"]))) for i in incidents)


def check_against_labels(report: dict) -> None:
    """The report finds exactly the incidents and escalations incident_day/expected.json labels."""
    assert labels(report["incidents"]) == labels(EXPECTED["incidents"])
    for label in EXPECTED["incidents"]:
        (inc,) = [i for i in report["incidents"] if (i["cause"], i["detail"]) == (label["cause"], label["detail"])]
        start, end = dt.datetime.fromisoformat(inc["start"]), dt.datetime.fromisoformat(inc["end"])
        assert dt.datetime.fromisoformat(label["after"]) <= start <= end <= dt.datetime.fromisoformat(label["before"])
        assert inc["evidence"], inc["id"]
    assert {e["rule"]: e["breached"] for e in report["escalations"]} == EXPECTED["escalations"]
    assert report["escalate"] is True
    assert report["unclassified"] == []


# ---- the recording -----------------------------------------------------------------------------


def test_incident_day_labels_cover_every_cause():
    assert {label["cause"] for label in EXPECTED["incidents"]} == set(CAUSES)
    assert EXPECTED["escalations"] == {"realtime_down": False, "subscription_failures": True,
                                       "db_connectivity": True, "payload_error_rate": False}


def test_incident_day_store_reports_its_labels():
    check_against_labels(build_report(DAY / "store").to_json())


def test_incident_day_incidents_in_story_order():
    report = build_report(DAY / "store").to_json()
    assert [(i["cause"], i["detail"], i["count"]) for i in report["incidents"]] == [
        ("subscription_race", "overlapping_joins", 1),
        ("invalid_payload", "empty_record", 3),
        ("payload_too_large", "record_truncated", 1),
        ("rls", "column_privilege", 1),
        ("rls", "events_filtered", 2),
        ("auth", "token_expired", 1),
        ("payload_missing", "foreign_table_in_publication", 3),
        ("network", "abnormal_close", 1),
        ("subscription_failure", "tenant", 3),
        ("db_connectivity", "unreachable", next(e["count"] for e in EXPECTED["incidents"] if e["cause"] == "db_connectivity")),
    ]
    esc = {e["rule"]: e for e in report["escalations"]}
    # the outage really lasted 5.5 minutes: from the first failed insert to "database reachable again"
    assert 320 < esc["db_connectivity"]["value"] < 345
    db = next(i for i in report["incidents"] if i["cause"] == "db_connectivity")
    assert esc["db_connectivity"]["incidents"] == [db["id"]]
    texts = [e["text"] for e in db["evidence"]]
    assert any("PGRST001" in t for t in texts)
    assert any(t.startswith("UnableToConnectToProject") for t in texts)
    # the last error of the outage is the bot escalating to on-call (the evidence list is capped)
    (line,) = [x for x in (DAY / "logs" / "notification.log").read_text().splitlines() if "escalating" in x]
    logged = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(db["end"]) == logged
    assert esc["subscription_failures"]["value"] == 3.0


def test_incident_day_evidence_belongs_to_its_incident():
    """A client line is evidence for the attempt it reports on, not the next failure of the topic:
    the channel error of the expired token (2.4 s before the tenant's refused rejoin) is the auth
    incident's, and the tenant incident holds its three refused joins and nothing from before."""
    report = build_report(DAY / "store").to_json()
    by = {i["cause"]: i for i in report["incidents"]}
    tenant, token = by["subscription_failure"], by["auth"]
    start = dt.datetime.fromisoformat(tenant["start"])
    assert all(dt.datetime.fromisoformat(e["ts"]) >= start - dt.timedelta(milliseconds=1) for e in tenant["evidence"])
    assert not [e for e in tenant["evidence"] if "Token has expired" in e["text"]]
    assert [e["source"] for e in tenant["evidence"] if e["text"].startswith("phx_join")] == ["proxy"] * 3
    assert any(e["source"] == "realtime" and e["text"].startswith("channel realtime:public:orders error:")
               and "Token has expired" in e["text"] for e in token["evidence"])


# ---- make run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, str]:
    """`make run` for real, the demo store and report.html going to a temporary directory.

    `-o .venv/.installed-stamp` keeps make from reinstalling the environment the tests run in.
    """
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the demo is `make run` (apt-get install make)")
    out = tmp_path_factory.mktemp("demo")
    store, html = out / "demo-store", out / "report.html"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "-o", ".venv/.installed-stamp", "run", f"DEMO={store}", f"REPORT={html}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return store, html, proc.stdout


def test_make_run_prints_every_cause_status_and_stats(demo):
    _, _, out = demo
    for cause in CAUSES:
        assert cause in out, cause
    for rule in ("realtime_down", "subscription_failures", "db_connectivity", "payload_error_rate"):
        assert rule in out, rule
    assert "inc-10" in out  # the text report lists all ten incidents
    assert "realtime:public:orders" in out  # status lists the channels
    assert "postgres_changes" in out  # stats counts frames by event


def test_make_run_writes_the_html_report(demo):
    _, html, _ = demo
    text = html.read_text()
    assert text.lstrip().lower().startswith("<!doctype html")
    assert "<svg" in text
    for cause in CAUSES:
        assert cause in text, cause


def rows(store: Path, table: str, columns: list[str]) -> list[dict]:
    parts = open_store(store).part_files(table)
    return sorted((r for p in parts for r in pq.read_table(p, columns=columns).to_pylist()),
                  key=lambda r: tuple(str(r[c]) for c in columns))


def test_make_run_store_is_the_recording(demo):
    store, _, _ = demo
    frame_columns = ["session_id", "seq", "ts", "direction", "kind", "topic", "event", "raw", "close_code", "source"]
    assert rows(store, "frames", frame_columns) == rows(DAY / "store", "frames", frame_columns)  # imported unchanged
    log_columns = ["ts", "source", "offset", "level", "logger", "message", "error_code"]
    assert rows(store, "logs", log_columns) == rows(DAY / "store", "logs", log_columns)  # `rt-record logs` read the same
    assert (store / "verdicts" / "verdicts.parquet").exists()  # rt-replay validate ran


def test_make_run_report_without_verdicts_matches_labels(demo, tmp_path):
    store, _, _ = demo
    copy = tmp_path / "store"
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("verdicts"))
    check_against_labels(build_report(copy).to_json())


def test_make_run_report_matches_labels(demo):
    store, _, _ = demo
    check_against_labels(build_report(store).to_json())


def test_importing_twice_is_refused(demo, tmp_path):
    store, _, _ = demo
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    proc = subprocess.run([sys.executable, "fixtures/scenarios/make_fixtures.py",
                           "--import-frames", "incident_day", str(copy)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "already holds frames of incident_day" in proc.stderr
    assert sorted(p.name for p in (copy / "frames").rglob("*.parquet")) == \
        sorted(p.name for p in (store / "frames").rglob("*.parquet"))
