"""analyzer.db views and ``rt-analyze sql``: real stores written by recorder.store in tmp_path."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer import connect
from analyzer.cli import main, render_csv, render_json, render_table
from analyzer.db import SqlResult, run_sql
from recorder.errors import InputError, StoreError
from recorder.store import FRAMES_SCHEMA, LOGS_SCHEMA, SCHEMAS, StoreWriter, open_store

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)

DUCKDB_TYPES = {
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.binary(): "BLOB",
    pa.bool_(): "BOOLEAN",
}


# ---- builders ---------------------------------------------------------------------------


def a_log_row(**overrides) -> dict:
    row = {
        "ts": T0,
        "source": "bot",
        "file": "bot.log",
        "file_id": "dev1-ino2-abcd",
        "offset": 0,
        "level": "info",
        "logger": "bot.main",
        "message": "started",
        "error_code": None,
        "project": None,
        "raw": "2026-11-24 08:00:00,123 INFO bot.main started",
        "parsed": True,
    }
    row.update(overrides)
    return row


def a_frame_row(**overrides) -> dict:
    raw = b'["1","1","realtime:public:orders","phx_join",{}]'
    row = {
        "ts": T0,
        "session_id": "s-1",
        "seq": 0,
        "direction": "out",
        "kind": "text",
        "vsn": "2.0.0",
        "topic": "realtime:public:orders",
        "event": "phx_join",
        "ref": "1",
        "join_ref": "1",
        "payload": "{}",
        "payload_bytes": len(raw),
        "raw": raw,
        "close_code": None,
        "decode_error": None,
        "source": "proxy",
    }
    row.update(overrides)
    return row


def record(store: Path, *, logs: list[dict] = (), frames: list[dict] = (), writer: str = "test") -> None:
    """Append rows through the store's own writer and commit them (close)."""
    with StoreWriter(store, writer=writer) as w:
        if logs:
            w.append("logs", pa.Table.from_pylist(list(logs), schema=LOGS_SCHEMA))
        if frames:
            w.append("frames", pa.Table.from_pylist(list(frames), schema=FRAMES_SCHEMA))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    open_store(path, create=True)
    return path


def rt_analyze(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def assert_one_error_line(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rt-analyze: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# ---- views ------------------------------------------------------------------------------


def test_logs_view_reads_every_partition_with_utc_timestamps(store):
    next_day = T0 + dt.timedelta(days=1)
    record(
        store,
        logs=[
            a_log_row(offset=0),
            a_log_row(offset=50, ts=next_day, level="error", error_code="UnableToBroadcastChanges"),
            a_log_row(offset=99, ts=None, parsed=False),
        ],
    )
    dates = sorted(p.parent.name for p in (store / "logs").glob("date=*/part-*.parquet"))
    assert dates == ["date=2026-11-24", "date=2026-11-25", "date=unknown"]

    con = connect(store)
    rows = con.sql('SELECT "offset", ts, level, error_code, parsed FROM logs ORDER BY "offset"').fetchall()
    assert rows == [
        (0, T0, "info", None, True),
        (50, next_day, "error", "UnableToBroadcastChanges", True),
        (99, None, "info", None, False),
    ]
    assert rows[0][1].utcoffset() == dt.timedelta(0)
    assert con.execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    assert con.execute("SELECT typeof(ts) FROM logs LIMIT 1").fetchall() == [("TIMESTAMP WITH TIME ZONE",)]


@pytest.mark.parametrize("table", sorted(SCHEMAS))
@pytest.mark.parametrize("with_parts", [False, True], ids=["empty", "with-parts"])
def test_views_have_the_store_schema_in_order(store, table, with_parts):
    if with_parts:
        record(store, logs=[a_log_row()], frames=[a_frame_row()])
    described = connect(store).sql(f"DESCRIBE {table}").fetchall()
    assert [(name, type_) for name, type_, *_ in described] == [
        (f.name, DUCKDB_TYPES[f.type]) for f in SCHEMAS[table]
    ]


def test_frames_view_without_parts_is_empty_and_typed(store):
    record(store, logs=[a_log_row()])
    con = connect(store, read_only_sql=True)
    assert con.execute("SELECT count(*) FROM frames").fetchall() == [(0,)]
    assert con.sql("SELECT ts, raw, close_code FROM frames").fetchall() == []
    assert con.execute("SELECT count(*) FROM logs").fetchall() == [(1,)]


@pytest.mark.parametrize("read_only_sql", [False, True])
def test_parts_committed_after_connect_are_seen_by_the_next_query(store, read_only_sql):
    con = connect(store, read_only_sql=read_only_sql)
    assert con.execute("SELECT count(*) FROM logs").fetchall() == [(0,)]

    record(store, logs=[a_log_row(offset=0)])
    assert con.execute("SELECT count(*) FROM logs").fetchall() == [(1,)]

    record(store, logs=[a_log_row(offset=10, ts=None)], frames=[a_frame_row()], writer="other")
    assert con.execute("SELECT count(*) FROM logs").fetchall() == [(2,)]
    assert con.execute("SELECT count(*) FROM frames").fetchall() == [(1,)]


def test_part_with_fewer_columns_reads_null_for_the_missing_ones(store):
    record(store, logs=[a_log_row(offset=0, project="abcdefgh")])
    older = pa.Table.from_pylist([a_log_row(offset=1)], schema=LOGS_SCHEMA).drop_columns(["project"])
    pq.write_table(older, store / "logs" / "date=2026-11-24" / "part-older.parquet")

    rows = connect(store).sql('SELECT "offset", project FROM logs ORDER BY "offset"').fetchall()
    assert rows == [(0, "abcdefgh"), (1, None)]


def test_temporary_parts_are_not_read(store):
    record(store, logs=[a_log_row()])
    part = next((store / "logs").glob("date=*/part-*.parquet"))
    (part.parent / f".tmp-{part.name}").write_bytes(part.read_bytes())
    assert connect(store).execute("SELECT count(*) FROM logs").fetchall() == [(1,)]


# ---- run_sql ----------------------------------------------------------------------------


def test_run_sql_returns_columns_types_and_rows(store):
    record(store, logs=[a_log_row(level="error"), a_log_row(offset=5)])
    result = run_sql(store, "SELECT level, count(*) AS n FROM logs GROUP BY level ORDER BY level")
    assert result == SqlResult(
        columns=["level", "n"], types=["VARCHAR", "BIGINT"], rows=[("error", 1), ("info", 1)]
    )


@pytest.mark.parametrize(
    "query",
    [
        "WITH e AS (SELECT * FROM logs) SELECT count(*) FROM e",
        "FROM logs SELECT count(*)",
        "DESCRIBE logs",
        "SHOW TABLES",
        "SUMMARIZE frames",
        "VALUES (1)",
        "EXPLAIN SELECT * FROM logs",
        "SELECT * FROM pragma_table_info('logs');",
    ],
)
def test_read_only_statements_run(store, query):
    record(store, logs=[a_log_row()])
    assert run_sql(store, query).columns


def test_run_sql_errors_are_library_errors(store):
    with pytest.raises(InputError, match="got DROP"):
        run_sql(store, "DROP VIEW logs")
    with pytest.raises(StoreError, match="no such store"):
        run_sql(store.parent / "missing", "SELECT 1")


# ---- rt-analyze sql: refused and failing queries ----------------------------------------


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("INSERT INTO logs VALUES (1)", "got INSERT"),
        ("CREATE TABLE t AS SELECT * FROM logs", "got CREATE"),
        ("DROP VIEW logs", "got DROP"),
        ("UPDATE logs SET level = 'x'", "got UPDATE"),
        ("DELETE FROM logs", "got DELETE"),
        ("COPY (SELECT * FROM logs) TO 'out.csv'", "got COPY"),
        ("ATTACH 'other.duckdb'", "got ATTACH"),
        ("INSTALL httpfs", "got LOAD"),
        ("LOAD httpfs", "got LOAD"),
        ("SET enable_external_access = true", "got SET"),
        ("PRAGMA version", "pragma_table_info"),
        ("EXPORT DATABASE 'dump'", "got EXPORT"),
        ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "got CREATE"),
        ("SELECT 1; DROP VIEW logs", "one statement at a time, got 2"),
        ("  -- nothing\n", "no SQL statement given"),
    ],
)
def test_statements_that_are_not_read_only_are_refused(store, capsys, query, fragment):
    assert_one_error_line(*rt_analyze(capsys, "sql", query, "--store", str(store)), fragment)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('{outside}')",
        "SELECT * FROM '{outside}'",
        "SELECT * FROM read_text('{store}/store.json')",
        "SELECT * FROM read_text('{store}/logs/../store.json')",
        "SELECT * FROM read_blob('{store}/_wal/test/state.json')",
        "SELECT * FROM read_csv('.tmp/secret.csv')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ],
)
def test_files_outside_the_store_cannot_be_read(store, tmp_path, capsys, monkeypatch, query):
    record(store, logs=[a_log_row()])
    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.table({"secret": [1]}), outside)
    # DuckDB allows its default spill directory ./.tmp: connect() must move it away.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "secret.csv").write_text("secret\n1\n")

    query = query.format(outside=outside, store=store)
    assert_one_error_line(*rt_analyze(capsys, "sql", query, "--store", str(store)), "query refused")


def test_the_store_parts_can_be_read_directly(store, capsys):
    record(store, logs=[a_log_row()])
    query = f"SELECT count(*) AS n FROM read_parquet('{store}/logs/*/part-*.parquet')"
    code, out, _ = rt_analyze(capsys, "sql", query, "--store", str(store), "--format", "json")
    assert (code, json.loads(out)) == (0, [{"n": 1}])


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        ("SELECT * FORM logs", ["query failed: Parser Error: syntax error"]),
        ("SELECT levle FROM logs", ['Referenced column "levle" not found', 'Candidate bindings: "level"']),
        ("SELECT * FROM log", ["Table with name log does not exist", 'Did you mean "logs"']),
        ("SELECT 'x'::INTEGER", ["Conversion Error"]),
        # typed SELECT by DuckDB, but there is no base table to write to
        ("WITH x AS (DELETE FROM logs RETURNING *) SELECT * FROM x", ["Can only delete from base table"]),
    ],
)
def test_duckdb_errors_are_one_line(store, capsys, query, fragments):
    assert_one_error_line(*rt_analyze(capsys, "sql", query, "--store", str(store)), *fragments)


# ---- rt-analyze sql: stores that cannot be opened ---------------------------------------


def test_missing_store(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert_one_error_line(*rt_analyze(capsys, "sql", "SELECT 1", "--store", str(missing)), "no such store")


def test_directory_that_is_not_a_store(tmp_path, capsys):
    assert_one_error_line(
        *rt_analyze(capsys, "sql", "SELECT 1", "--store", str(tmp_path)), "not an rt-blackbox store"
    )


def test_store_of_a_newer_version(tmp_path, capsys):
    (tmp_path / "store.json").write_text(json.dumps({"format": "rt-blackbox-store", "version": 99}))
    assert_one_error_line(
        *rt_analyze(capsys, "sql", "SELECT 1", "--store", str(tmp_path)),
        "store format version 99 is newer",
        "upgrade rt-blackbox",
    )


def test_bad_usage_exits_2(store, capsys):
    assert_one_error_line(
        *rt_analyze(capsys, "sql", "SELECT 1", "--store", str(store), "--format", "xml"), "xml"
    )
    assert_one_error_line(*rt_analyze(capsys, "sql", "SELECT 1"), "--store")


# ---- rt-analyze sql: output formats -----------------------------------------------------

FORMATS_QUERY = 'SELECT ts, "offset", level, message, error_code, parsed FROM logs ORDER BY "offset"'


@pytest.fixture
def store_for_formats(store) -> Path:
    record(
        store,
        logs=[
            a_log_row(offset=7, level="error", message='payload, "quoted"\nsecond line', parsed=True),
            a_log_row(offset=120, ts=None, message="", error_code="UnableToBroadcastChanges", parsed=False),
        ],
    )
    return store


def test_table_format(store_for_formats, capsys):
    code, out, err = rt_analyze(capsys, "sql", FORMATS_QUERY, "--store", str(store_for_formats))
    assert (code, err) == (0, "")
    assert out == (
        "ts                          | offset | level | message           | error_code               | parsed\n"
        "----------------------------+--------+-------+-------------------+--------------------------+-------\n"
        '2026-11-24T08:00:00.123456Z |      7 | error | payload, "quoted" | NULL                     | true\n'
        "                            |        |       | second line       |                          |\n"
        "NULL                        |    120 | info  |                   | UnableToBroadcastChanges | false\n"
        "(2 rows)\n"
    )


def test_table_format_without_rows(store, capsys):
    code, out, _ = rt_analyze(capsys, "sql", "SELECT session_id, seq FROM frames", "--store", str(store))
    assert (code, out) == (0, "session_id | seq\n-----------+----\n(0 rows)\n")


def test_csv_format(store_for_formats, capsys):
    code, out, err = rt_analyze(
        capsys, "sql", FORMATS_QUERY, "--store", str(store_for_formats), "--format", "csv"
    )
    assert (code, err) == (0, "")
    assert out.endswith("\r\n")
    assert list(csv.reader(io.StringIO(out, newline=""))) == [
        ["ts", "offset", "level", "message", "error_code", "parsed"],
        ["2026-11-24T08:00:00.123456Z", "7", "error", 'payload, "quoted"\nsecond line', "", "true"],
        ["", "120", "info", "", "UnableToBroadcastChanges", "false"],
    ]


def test_json_format(store_for_formats, capsys):
    code, out, err = rt_analyze(
        capsys, "sql", FORMATS_QUERY, "--store", str(store_for_formats), "--format", "json"
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {
            "ts": "2026-11-24T08:00:00.123456Z",
            "offset": 7,
            "level": "error",
            "message": 'payload, "quoted"\nsecond line',
            "error_code": None,
            "parsed": True,
        },
        {
            "ts": None,
            "offset": 120,
            "level": "info",
            "message": "",
            "error_code": "UnableToBroadcastChanges",
            "parsed": False,
        },
    ]


def test_binary_and_special_values(store, capsys):
    raw = b"\x00\xffnot utf-8"
    record(store, frames=[a_frame_row(kind="binary", raw=raw, payload=None, close_code=1006)])
    query = (
        "SELECT raw, payload, close_code, 'nan'::DOUBLE AS nan, 1.5 AS dec, [1, 2] AS list, "
        "{'k': 'v'} AS obj, DATE '2026-11-24' AS day, INTERVAL 90 SECOND AS took FROM frames"
    )
    code, out, _ = rt_analyze(capsys, "sql", query, "--store", str(store), "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {
            "raw": base64.b64encode(raw).decode(),
            "payload": None,
            "close_code": 1006,
            "nan": None,
            "dec": 1.5,
            "list": [1, 2],
            "obj": {"k": "v"},
            "day": "2026-11-24",
            "took": "PT90S",
        }
    ]
    code, out, _ = rt_analyze(capsys, "sql", query, "--store", str(store), "--format", "csv")
    assert list(csv.reader(io.StringIO(out, newline="")))[1] == [
        base64.b64encode(raw).decode(), "", "1006", "nan", "1.5", "[1, 2]", '{"k": "v"}', "2026-11-24", "PT90S",
    ]  # fmt: skip


def test_json_refuses_duplicate_column_names(store, capsys):
    assert_one_error_line(
        *rt_analyze(capsys, "sql", "SELECT 1 AS a, 2 AS a", "--store", str(store), "--format", "json"),
        "'a' appears twice",
    )


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_text_values_round_trip_through_every_format(values):
    result = SqlResult(columns=["value"], types=["VARCHAR"], rows=[(v,) for v in values])

    out = io.StringIO(newline="")
    render_csv(result, out)
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [["value"], *([v] for v in values)]

    out = io.StringIO()
    render_json(result, out)
    assert json.loads(out.getvalue()) == [{"value": v} for v in values]

    out = io.StringIO()
    render_table(result, out)
    text = out.getvalue()
    assert text.endswith(f"({len(values)} row{'' if len(values) == 1 else 's'})\n")
    for v in values:  # never cut off: every line of every value is printed
        for line in v.replace("\r\n", "\n").replace("\r", "\\r").replace("\t", "\\t").split("\n"):
            assert line.rstrip() in text


# ---- the console script -----------------------------------------------------------------


def run_console_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_console_script_prints_json_and_exits_0(store):
    record(store, logs=[a_log_row(level="warning")])
    done = run_console_script("sql", "SELECT level FROM logs", "--store", str(store), "--format", "json")
    assert (done.returncode, json.loads(done.stdout), done.stderr) == (0, [{"level": "warning"}], "")


def test_console_script_refusal_is_one_line_and_exit_2(store):
    done = run_console_script("sql", "SELECT * FROM read_csv('/etc/passwd')", "--store", str(store))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_help_shows_a_real_example_per_command(capsys):
    code, out, _ = rt_analyze(capsys, "--help")
    assert code == 0 and 'rt-analyze sql "SELECT' in out
    code, out, _ = rt_analyze(capsys, "sql", "--help")
    assert code == 0 and "--store ./store --format json" in out and "base64" in out
