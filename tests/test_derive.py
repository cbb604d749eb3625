"""Derived tables: written with each committed part, read by the report, never needed for its answer.

The recorder writes, beside each part, what the analyzer would otherwise compute from every
payload and log line (recorder/derive.py). These tests hold it to three promises: the files are
there and say the right things, a report reads the same with them as without them (on every
labelled recording, windowed, mixed, with verdicts), and a failed derivation or a crash never costs
a record.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import recorder.derive as derive_mod
import recorder.store as store_mod
from analyzer.db import connect
from analyzer.report import build_report, pin_window
from analyzer.thresholds import Thresholds
from analyzer.validate import validate_store
from recorder.cli import main as record_main
from recorder.derive import DERIVED
from recorder.errors import StoreError
from recorder.store import StoreWriter, backfill_derived, open_store
from tests.test_analyzer_report import SCENARIO_DIRS, SCENARIOS, StoreBuilder


def report_json(store: Path, **window) -> dict:
    return build_report(store, **window).to_json()


def derived_files(store: Path) -> list[Path]:
    return sorted((store / store_mod.DERIVED_DIR).rglob("*.parquet"))


def parts_without_derived(store: Path) -> list[Path]:
    opened = open_store(store)
    return [p for table in DERIVED for p in opened.derived_parts(table)[1]]


def a_small_day(path: Path) -> StoreBuilder:
    """Frames and log lines of every kind the derived tables sort out."""
    b = StoreBuilder(path)
    b.session(0, "s1")
    b.change(1, record={"id": 7, "status": "paid"})
    b.change(2, record={})  # invalid: empty record
    b.frame(3, "in", "broadcast", {"event": "e", "payload": None, "type": "broadcast"})
    b.frame(4, "out", "heartbeat", {}, topic="phoenix", ref="9")
    b.log(1, "inserted order 7 into public.orders (customer 1, total 9.99)")
    b.log(1.5, "received postgres_changes INSERT for public.orders id=7")
    b.log(2, 'send: {"event":"heartbeat","payload":{},"topic":"phoenix"}', source="realtime", level="debug",
          logger="realtime._async.client")
    b.log(3, "something nobody knows went wrong", level="error")
    b.log(None, "a line without a time", level="error")
    return b


# ---- what the recorder writes --------------------------------------------------------------------


def test_each_committed_part_gets_its_derived_tables(tmp_path):
    store = a_small_day(tmp_path / "store").write()
    opened = open_store(store)
    for table, names in DERIVED.items():
        for part in opened.part_files(table):
            for name in names:
                assert opened.derived_file(name, part).is_file(), (table, part.name, name)
    assert parts_without_derived(store) == []

    logs = {p.parent.name: p for p in opened.part_files("logs")}
    assert set(logs) == {"date=2026-11-24", "date=unknown"}
    signals = pq.read_table(opened.derived_file("log_signals", logs["date=2026-11-24"])).to_pylist()
    by_line = {r["line"]: r for r in signals}
    write = by_line["inserted order 7 into public.orders (customer 1, total 9.99)"]
    assert (write["signal"], write["table_name"], write["op"], write["record_id"]) == ("write", "public.orders", "INSERT", "7")
    assert by_line["received postgres_changes INSERT for public.orders id=7"]["signal"] == "received_change"
    assert by_line["something nobody knows went wrong"]["signal"] is None  # error-level, kept for "unclassified"
    assert not any(r["line"].startswith("send: ") for r in signals)  # a debug frame dump says nothing
    # grouped by signal (NULL last), so that a query for one signal skips the row groups of the others
    assert [r["signal"] for r in signals] == sorted((r["signal"] for r in signals), key=lambda s: (s is None, s or ""))
    untimed = pq.read_table(opened.derived_file("log_signals", logs["date=unknown"])).to_pylist()
    assert [(r["ts"], r["line"]) for r in untimed] == [(None, "a line without a time")]

    frames = opened.part_files("frames")
    changes = pq.read_table(opened.derived_file("changes", frames[0])).to_pylist()
    assert [(c["relation"], c["type"], c["record_id"], c["problem"]) for c in changes] == [
        ("public.orders", "INSERT", "7", None), ("public.orders", "INSERT", None, "record: empty")]
    assert changes[0]["payload"] is None and json.loads(changes[1]["payload"])["data"]["record"] == {}
    bad = pq.read_table(opened.derived_file("bad_frames", frames[0])).to_pylist()
    assert [(r["event"], r["problem"]) for r in bad] == [("broadcast", "payload.payload: null, not an object")]
    control = pq.read_table(opened.derived_file("control_frames", frames[0])).to_pylist()
    assert [(r["kind"], r["event"]) for r in control] == [("open", None), ("text", "phx_join"), ("text", "phx_reply")]


def test_a_failed_derivation_still_commits_the_part(tmp_path, monkeypatch, caplog):
    expected = report_json(a_small_day(tmp_path / "ok").write())

    def broken(table, rows):
        raise RuntimeError("derivation exploded")

    monkeypatch.setattr(derive_mod, "derive_part", broken)
    with caplog.at_level(logging.WARNING, logger="recorder.store"):
        store = a_small_day(tmp_path / "store").write()
    assert "derived tables of part-test-" in caplog.text and "derivation exploded" in caplog.text
    assert derived_files(store) == []
    assert len(open_store(store).part_files("logs")) == 2 and len(open_store(store).part_files("frames")) == 1
    monkeypatch.undo()
    got = report_json(store)
    assert got["counts"] == expected["counts"] and got["incidents"] == expected["incidents"]


def test_parts_a_crash_left_underived_are_derived_when_their_writer_starts_again(tmp_path, monkeypatch):
    """The derived tables are written after the commit: a recorder killed in between leaves parts
    without them (and perhaps a temporary); its next start derives its own parts and cleans up."""
    store = tmp_path / "s"
    builder = a_small_day(store)
    monkeypatch.setattr(store_mod._Deriver, "submit", lambda self, table, rows, part: None)  # dies first
    with StoreWriter(store, "t") as w:
        w.append("logs", pa.Table.from_pylist(builder.logs, schema=store_mod.LOGS_SCHEMA))
    with StoreWriter(store, "other") as w:
        w.append("frames", pa.Table.from_pylist(builder.frames, schema=store_mod.FRAMES_SCHEMA))
    monkeypatch.undo()
    opened = open_store(store)
    assert derived_files(store) == [] and len(parts_without_derived(store)) == 3
    part = opened.part_files("logs")[0]
    stray = opened.derived_file("log_signals", part).with_name(f".tmp-{part.name}")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a file")
    StoreWriter(store, "t").close()
    assert not stray.exists()
    left = parts_without_derived(store)
    assert [p.parent.parent.name for p in left] == ["frames"], "writer t derived its logs parts, not another's frames"
    assert len(derived_files(store)) == 2
    StoreWriter(store, "other").close()
    assert parts_without_derived(store) == []


# ---- the report reads the same with and without them ---------------------------------------------


def _copy(store: Path, dest: Path) -> Path:
    shutil.copytree(store, dest, ignore=shutil.ignore_patterns("_wal"))
    return dest


@pytest.mark.parametrize("scenario", SCENARIO_DIRS, ids=[p.name for p in SCENARIO_DIRS])
def test_reports_are_the_same_with_derived_tables(scenario, tmp_path):
    """The committed recordings predate derived tables: derive them and nothing may change."""
    store = _copy(scenario / "store", tmp_path / "store")
    assert derived_files(store) == []
    before = report_json(store)
    assert backfill_derived(store) == sum(len(open_store(store).part_files(t)) for t in DERIVED)
    assert parts_without_derived(store) == []
    assert report_json(store) == before


def test_incident_day_is_the_same_windowed_and_with_half_of_its_parts_derived(tmp_path):
    store = _copy(SCENARIOS / "incident_day" / "store", tmp_path / "store")
    times = [t for p in open_store(store).part_files("frames") for t in pq.read_table(p, columns=["ts"])["ts"].to_pylist()]
    span = max(times) - min(times)
    window = {"since": min(times) + span / 4, "until": min(times) + span * 3 / 4}
    legacy_whole, legacy_window = report_json(store), report_json(store, **window)
    assert legacy_window["incidents"] != legacy_whole["incidents"], "the window must cut the day"
    backfill_derived(store)
    assert report_json(store) == legacy_whole and report_json(store, **window) == legacy_window
    # half of the parts lose their derived tables: those are derived at report time, the rest read
    opened = open_store(store)
    for table, names in DERIVED.items():
        for part in opened.part_files(table)[::2]:
            for name in names:
                opened.derived_file(name, part).unlink()
    assert parts_without_derived(store)
    assert report_json(store) == legacy_whole and report_json(store, **window) == legacy_window


def test_a_verdict_refuting_a_change_our_check_passes_brings_its_payload(tmp_path):
    """Derived changes keep the payload of invalid ones only; a stricter schema's verdict fetches it."""
    b = StoreBuilder(tmp_path / "store")
    b.session(0, "s1")
    for i in range(3):
        b.change(1 + i, record={"id": i} if i != 1 else {"id": i, "status": "paid"})
    store = b.write()
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "public.orders.json").write_text(json.dumps(
        {"type": "object", "required": ["id", "status"], "properties": {"status": {"type": "string"}}}))
    assert validate_store(store, schemas).invalid == 2
    assert parts_without_derived(store) == []
    report = build_report(store)
    [inc] = [i for i in report.incidents if i.cause == "invalid_payload"]
    assert inc.count == 2
    texts = [e.text for e in inc.evidence]
    assert all(t.startswith('postgres_changes {"data"') and '"record": {"id": ' in t for t in texts), texts
    for part in open_store(store).part_files("frames"):
        for name in DERIVED["frames"]:
            open_store(store).derived_file(name, part).unlink()
    assert build_report(store).to_json() == report.to_json()


def test_pinned_views_read_the_derived_files(tmp_path):
    """With every part derived, the report's log_signals and changes are scans of the derived
    files (no temporary table derived again from the parts)."""
    store = a_small_day(tmp_path / "store").write()
    con = connect(store)
    pin_window(con, None, None, Thresholds())
    for view in ("log_signals", "changes_base", "bad_frames"):
        plan = con.execute(f"EXPLAIN SELECT * FROM {view}").fetchall()[0][1]
        assert plan.lstrip().startswith("╭─ Read Parquet"), (view, plan)
        assert "json_extract" not in plan and "regexp" not in plan, view
        # exactly the derived table's columns (no hive "date" column from the date=... folders)
        columns = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
        assert "date" not in columns and columns[:2] == ["ts", "session_id" if view != "log_signals" else "source"]
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"control_frames", "sessions", "joins", "connections"}
    con.close()


# ---- the converter ---------------------------------------------------------------------------------


def test_rt_record_derive_writes_what_is_missing_once(tmp_path, capsys):
    store = _copy(SCENARIOS / "rls" / "store", tmp_path / "store")
    parts = sum(len(open_store(store).part_files(t)) for t in DERIVED)
    with pytest.raises(SystemExit) as exc:
        record_main(["derive", "--store", str(store)])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"{store}: derived tables written for {parts} parts\n"
    assert parts_without_derived(store) == []
    with pytest.raises(SystemExit) as exc:
        record_main(["derive", "--store", str(store)])
    assert (exc.value.code, capsys.readouterr().out) == (0, f"{store}: derived tables written for 0 parts\n")


def test_rt_record_derive_bad_stores_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        record_main(["derive", "--store", str(tmp_path / "nope")])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and err.count("\n") == 1 and "no such store" in err
    store = _copy(SCENARIOS / "rls" / "store", tmp_path / "store")
    part = open_store(store).part_files("logs")[0]
    part.write_bytes(b"not parquet at all")
    with pytest.raises(StoreError, match=f"{part.name}: cannot read the part"):
        backfill_derived(store)
    # nowhere to write (a file where the derived folder goes): one line, exit 2
    store = _copy(SCENARIOS / "rls" / "store", tmp_path / "store2")
    (store / store_mod.DERIVED_DIR).write_text("in the way")
    with pytest.raises(SystemExit) as exc:
        record_main(["derive", "--store", str(store)])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and err.count("\n") == 1 and "cannot write its derived tables" in err, err
