"""The store contract: layout, versions, WAL acknowledgement, recovery, commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.errors import StoreError, StoreLockedError
from recorder.store import LOGS_SCHEMA, StoreWriter, open_store


def a_log_row(**overrides) -> dict:
    row = {
        "ts": datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC),
        "source": "bot",
        "file": "bot.log",
        "file_id": "f1",
        "offset": 0,
        "level": "info",
        "logger": "bot",
        "message": "hello",
        "error_code": None,
        "project": None,
        "raw": "2026-11-24 08:00:00,000 - bot - INFO - hello",
        "parsed": True,
    }
    row.update(overrides)
    return row


def log_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=LOGS_SCHEMA)


def read_logs(store) -> pa.Table:
    files = sorted(str(p) for p in open_store(store).part_files("logs"))
    if not files:
        return LOGS_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=LOGS_SCHEMA) for f in files]).sort_by("offset")


def test_new_store_has_versioned_meta_and_tables(tmp_path):
    store = tmp_path / "s"
    StoreWriter(store, "t").close()
    meta = json.loads((store / "store.json").read_text())
    assert meta["format"] == "rt-blackbox-store"
    assert meta["version"] == 1
    assert (store / "frames").is_dir() and (store / "logs").is_dir()
    assert meta["tables"]["logs"] == LOGS_SCHEMA.names


def test_rows_are_partitioned_by_utc_date_and_unknown(tmp_path):
    store = tmp_path / "s"
    rows = [
        a_log_row(offset=0, ts=datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)),
        a_log_row(offset=1, ts=datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)),
        a_log_row(offset=2, ts=None),
    ]
    with StoreWriter(store, "t") as w:
        w.append("logs", log_table(rows))
    dates = sorted(p.parent.name for p in open_store(store).part_files("logs"))
    assert dates == ["date=2026-11-24", "date=2026-11-25", "date=unknown"]
    assert read_logs(store)["offset"].to_pylist() == [0, 1, 2]


def test_open_errors_are_one_clear_line(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not an rt-blackbox store"):
        open_store(tmp_path / "plain")
    with pytest.raises(StoreError, match="not empty"):
        StoreWriter(tmp_path / "plain", "t")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "store.json").write_text(json.dumps({"format": "rt-blackbox-store", "version": 2}))
    with pytest.raises(StoreError, match="version 2 is newer"):
        open_store(newer)
    (newer / "store.json").write_text(json.dumps({"format": "rt-blackbox-store", "version": True}))
    with pytest.raises(StoreError, match="not supported"):
        open_store(newer)


def test_second_writer_with_same_name_is_refused(tmp_path):
    w = StoreWriter(tmp_path / "s", "logs")
    try:
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            StoreWriter(tmp_path / "s", "logs")
        StoreWriter(tmp_path / "s", "proxy").close()  # another writer name is fine
    finally:
        w.close()


def test_acknowledged_rows_survive_a_writer_that_never_closed(tmp_path):
    store = tmp_path / "s"
    w = StoreWriter(store, "t", flush_interval=3600)
    w.append("logs", log_table([a_log_row(offset=i) for i in range(5)]), {"cp": 5})
    # simulate a crash: the process dies with the WAL written and nothing committed
    w._release()
    assert read_logs(store).num_rows == 0
    w2 = StoreWriter(store, "t")
    assert w2.recovered_entries == 1
    assert w2.checkpoints == {"cp": 5}
    w2.close()
    assert read_logs(store)["offset"].to_pylist() == [0, 1, 2, 3, 4]
    # and exactly once: a third open recovers nothing more
    w3 = StoreWriter(store, "t")
    assert w3.recovered_entries == 0
    w3.close()
    assert read_logs(store).num_rows == 5


def test_torn_wal_tail_is_cut_and_later_appends_survive(tmp_path):
    store = tmp_path / "s"
    w = StoreWriter(store, "t", flush_interval=3600)
    w.append("logs", log_table([a_log_row(offset=1)]), {"cp": 1})
    w.append("logs", log_table([a_log_row(offset=2)]), {"cp": 2})
    w._release()
    seg = sorted((store / "_wal" / "t").glob("wal-*.log"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # the second entry was being written when the process died
    w2 = StoreWriter(store, "t", flush_interval=3600)
    assert w2.checkpoints == {"cp": 1}
    w2.append("logs", log_table([a_log_row(offset=3)]), {"cp": 3})
    w2._release()
    w3 = StoreWriter(store, "t")
    w3.close()
    assert read_logs(store)["offset"].to_pylist() == [1, 3]
    assert w3.checkpoints == {"cp": 3}


def test_commit_interrupted_before_renames_is_rolled_forward(tmp_path, monkeypatch):
    store = tmp_path / "s"
    w = StoreWriter(store, "t", flush_interval=3600)
    w.append("logs", log_table([a_log_row(offset=7)]))
    calls = []
    real_replace = os.replace

    def dying_replace(src, dst):
        if str(src).endswith(".parquet"):
            calls.append(dst)
            raise SystemExit("killed between commit point and rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        w.flush()
    monkeypatch.setattr(os, "replace", real_replace)
    w._release()
    assert calls and read_logs(store).num_rows == 0
    StoreWriter(store, "t").close()
    assert read_logs(store)["offset"].to_pylist() == [7]


def test_stray_temporaries_are_removed_and_rows_replayed(tmp_path, monkeypatch):
    store = tmp_path / "s"
    w = StoreWriter(store, "t", flush_interval=3600)
    w.append("logs", log_table([a_log_row(offset=9)]))
    import recorder.store as store_mod

    def dying_state(*a, **k):
        raise SystemExit("killed before the commit point")

    monkeypatch.setattr(store_mod, "_write_json_atomic", dying_state)
    with pytest.raises(SystemExit):
        w.flush()
    monkeypatch.undo()
    w._release()
    temps = list((store / "logs").glob("date=*/.tmp-*"))
    assert temps, "the interrupted commit left its temporary part"
    StoreWriter(store, "t").close()
    assert not list((store / "logs").glob("date=*/.tmp-*"))
    assert read_logs(store)["offset"].to_pylist() == [9]


def test_schema_mismatch_is_refused(tmp_path):
    with StoreWriter(tmp_path / "s", "t") as w:
        with pytest.raises(StoreError, match="missing"):
            w.append("logs", pa.table({"ts": [1]}))
        with pytest.raises(StoreError, match="unknown table"):
            w.append("nope", None)


def test_read_only_store_cli_error(tmp_path):
    """A store on a read-only file system: one line, exit 2 (simulated with a file as parent)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    log = tmp_path / "bot.log"
    log.write_text("2026-11-24 08:00:00,000 - bot - INFO - hi\n")
    r = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "logs", str(log), "--store", str(blocker / "s")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "cannot create store" in r.stderr


def test_many_appends_make_few_parts(tmp_path):
    store = tmp_path / "s"
    with StoreWriter(store, "t", flush_interval=3600) as w:
        for i in range(200):
            w.append("logs", log_table([a_log_row(offset=i)]))
    assert len(open_store(store).part_files("logs")) == 1
    assert read_logs(store).num_rows == 200
