"""``build_report``: one store and a window in, one :class:`~analyzer.model.Report` out.

Steps: open the store (:func:`analyzer.db.connect`), pin the views to the window (``frames``
and ``logs`` become windowed views over the store's, renamed ``*_store``; the views that parse
JSON or match log patterns read what the recorder derived when it wrote each part, see
:func:`pin_window`), run the rule registry, evaluate the escalation rules, and list the
error-level records no rule explained. Nothing is written to the store.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import duckdb

from analyzer.db import STORE_VARIABLE, connect, describe_duckdb_error, sql_string
from analyzer.escalations import evaluate
from analyzer.model import Report, Unclassified, evidence_from_row
from analyzer.rules import Context, parse_writes, run_rules
from analyzer.thresholds import Thresholds
from analyzer.views import RECORDER_DERIVED
from recorder.derive import derive_sql
from recorder.errors import InputError, StoreError
from recorder.store import Store, open_store

CHART_BUCKETS = 60


def parse_time(text: str | None, option: str = "--since") -> dt.datetime | None:
    """ISO 8601 date or time (``2026-11-24``, ``2026-11-24T08:00``, ``...Z``, ``...+01:00``); naive is UTC."""
    if text is None:
        return None
    value = text.strip()
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-11-24T08:00:00Z)") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


def _lit(ts: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{ts.astimezone(dt.UTC).isoformat()}'"


def pin_window(con: duckdb.DuckDBPyConnection, since: dt.datetime | None, until: dt.datetime | None,
               thresholds: Thresholds) -> None:
    """Restrict the views of ``con`` (made by :func:`analyzer.db.connect`) to the window, once.

    Without a window, log records without a time stay in (they are counted and can be
    unclassified); with one they cannot be placed in it and are left out.

    ``frames`` and ``logs`` become windowed views over the store's (renamed ``*_store``). The
    recorder's derived tables (``log_signals``, ``changes_base``, ``control_frames``, ``bad_frames``) are read from
    the files it wrote beside each part (:func:`_pin_derived`); ``control_frames``, ``sessions``,
    ``joins`` and ``connections`` (small) become temporary tables of the same names, once each, so
    that each rule reads them without computing them again. ``heartbeats`` stays a view (the report asks it
    one question, ``rule_heartbeat_timeouts.sql``).
    """
    cond = []
    if since is not None:
        cond.append(f"ts >= {_lit(since)}")
    if until is not None:
        cond.append(f"ts < {_lit(until)}")
    where = " AND ".join(cond) or "true"
    try:  # DuckDB in Jupyter without ipywidgets refuses the setting; the bar is cosmetic there
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass
    for table in ("frames", "logs"):
        con.execute(f"ALTER VIEW {table} RENAME TO {table}_store")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {table}_store WHERE {where}")
    con.execute(f"SET VARIABLE rt_join_timeout_s = {float(thresholds.analysis.join_timeout_s)}")
    store = open_store(con.execute(f"SELECT getvariable('{STORE_VARIABLE}')").fetchone()[0])
    for view, (derived, table) in RECORDER_DERIVED.items():
        _pin_derived(con, store, view, derived, table, where)
    for view in ("sessions", "joins", "connections"):  # sessions: read by joins and connections
        con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT * FROM main.{view}")


# derived views read by many rules and small: a temporary table even when read from derived files
_MATERIALISED = ("control_frames",)


def _pin_derived(con: duckdb.DuckDBPyConnection, store: Store, view: str, derived: str, table: str,
                 where: str) -> None:
    """Point view ``view`` at the recorder's derived table ``derived`` of ``table``'s parts in the window.

    Parts with derived files are read from them; the rows of the others (older parts, or a failed
    derivation) are derived here by the same SQL, once, into a temporary table.
    """
    done, missing = store.derived_parts(table)
    if done:
        derived_files = _sql_list(by_name[derived] for _, by_name in done)
        pieces = [f"SELECT * FROM read_parquet({derived_files}, hive_partitioning = false) WHERE {where}"]
        if missing:
            rows = f"(SELECT * FROM read_parquet({_sql_list(missing)}, hive_partitioning = false, union_by_name = true) WHERE {where})"
            con.execute(f"CREATE OR REPLACE TEMP TABLE {view}_underived AS {derive_sql(derived, rows)}")
            pieces.append(f"SELECT * FROM temp.{view}_underived")
        con.execute(f"CREATE OR REPLACE VIEW main.{view} AS " + " UNION ALL BY NAME ".join(pieces))
    if not done or view in _MATERIALISED:  # no derived files: derive every row of the window, once
        con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT * FROM main.{view}")


def _sql_list(paths) -> str:
    return "[" + ", ".join(sql_string(str(p)) for p in paths) + "]"


def build_report(
    store: str | Path,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    thresholds: Thresholds | None = None,
    writes: str | Path | None = None,
    chart: bool = False,
) -> Report:
    """Analyse ``store`` between ``since`` (inclusive) and ``until`` (exclusive).

    ``chart`` adds per-bucket traffic for the HTML timeline (one more pass over the window).

    Raises InputError for a window that ends before it starts or a bad ``writes`` file, and
    StoreError when the store cannot be read.

    Example::

        report = build_report("store", since=parse_time("2026-11-24T08:00Z"))
        print(report.to_json()["escalate"])
    """
    thresholds = thresholds or Thresholds()
    if since is not None and until is not None and since >= until:
        raise InputError(f"--since {since:%Y-%m-%dT%H:%M:%SZ} is not before --until {until:%Y-%m-%dT%H:%M:%SZ}")
    expected = []
    if writes is not None:
        try:
            text = Path(writes).read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"{writes}: cannot read the writes file ({err.strerror or err})") from None
        expected = parse_writes(text, str(writes))
    con = connect(store)
    try:
        return _build(con, since, until, thresholds, expected, chart)
    except duckdb.IOException as err:
        raise StoreError(f"reading the store failed: {describe_duckdb_error(err)}") from None
    finally:
        con.close()


def _build(con, since, until, thresholds, expected, chart) -> Report:
    pin_window(con, since, until, thresholds)
    f_min, f_max, n_frames = con.execute("SELECT min(ts), max(ts), count(*) FROM frames").fetchone()
    l_min, l_max, n_logs, n_untimed = con.execute(
        "SELECT min(ts), max(ts), count(*), count(*) FILTER (WHERE ts IS NULL) FROM logs"
    ).fetchone()
    n_changes, n_invalid = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE problem IS NOT NULL) FROM changes"
    ).fetchone()
    starts = [t for t in (f_min, l_min) if t is not None]
    ends = [t for t in (f_max, l_max) if t is not None]
    window_start = since or (min(starts) if starts else None)
    window_end = until or (max(ends) if ends else None)
    ctx = Context(con, thresholds, expected_writes=[w for w in expected if _inside(w["ts"], since, until)])
    incidents = run_rules(ctx)
    escalations = evaluate(ctx, incidents, window_end)
    notes = []
    if not n_frames and not n_logs:
        notes.append("the window holds no frames and no log records: nothing to analyse")
    elif not n_frames:
        notes.append("no frames recorded: incidents come from log lines only (record frames with rt-record proxy)")
    elif not n_logs:
        notes.append("no log records: incidents come from frames only (add logs with rt-record logs)")
    if n_untimed:
        notes.append(f"{n_untimed} log record(s) have no time: counted, listed when error-level, never placed in an incident")
    notes += _skew_notes(con, thresholds, (f_min, f_max))
    return Report(
        window_start=window_start,
        window_end=window_end,
        counts={"frames": n_frames, "log_records": n_logs, "postgres_changes": n_changes, "invalid_payloads": n_invalid},
        incidents=incidents,
        escalations=escalations,
        unclassified=_unclassified(ctx),
        notes=notes,
        series=_series(con, window_start, window_end, incidents) if chart else {},
    )


def _inside(ts, since, until) -> bool:
    return (since is None or ts >= since) and (until is None or ts < until)


_MASK = re.compile(r"\d+")


def _unclassified(ctx: Context) -> list[Unclassified]:
    groups: dict[tuple, Unclassified] = {}
    for row in ctx.query("rule_unclassified"):
        ev = evidence_from_row(row)
        if ev.key in ctx.claimed:
            continue
        pattern = _MASK.sub("N", (row["text"] or "").strip())[:160]
        key = (row["source"], row["level"], pattern)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Unclassified(row["source"], row["level"], row["text"] or "", 0, row["ts"], row["ts"])
        group.count += 1
        if row["ts"] is not None:
            group.first = row["ts"] if group.first is None else min(group.first, row["ts"])
            group.last = row["ts"] if group.last is None else max(group.last, row["ts"])
        if len(group.evidence) < 3:
            group.evidence.append(ev)
    return sorted(groups.values(), key=lambda g: (-g.count, g.source or "", g.text))


def _skew_notes(con, thresholds: Thresholds, spans: tuple) -> list[str]:
    """Say when a log file's clock seems off against the frames (matching then needs tolerance).

    ``spans``: the first and last time of the frames in the window.
    """
    rows = con.execute(
        """
        WITH closes AS (SELECT ts, close_code FROM control_frames WHERE kind = 'close' AND close_code IS NOT NULL),
        lines AS (SELECT source, ts, code FROM log_signals WHERE signal = 'ws_closed' AND ts IS NOT NULL)
        SELECT l.source, median(date_diff('millisecond', c.ts, l.ts)) / 1000.0 AS skew_s, count(*) AS n
        FROM lines l ASOF JOIN closes c ON l.ts >= c.ts
        GROUP BY l.source
        """
    ).fetchall()
    notes = []
    for source, skew, n in rows:
        if skew is not None and abs(skew) > thresholds.analysis.match_tolerance_s:
            notes.append(f"{source} logs seem {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} the frames "
                         f"({n} close(s) compared); check the file's time zone (--tz) or raise analysis.match_tolerance")
    if spans[0] is not None:
        for source, lo, hi in con.execute(
            "SELECT source, min(ts), max(ts) FROM logs WHERE ts IS NOT NULL GROUP BY source ORDER BY source"
        ).fetchall():
            margin = dt.timedelta(minutes=5)
            if hi < spans[0] - margin or lo > spans[1] + margin:
                notes.append(f"{source} logs ({lo:%Y-%m-%d %H:%M} to {hi:%H:%M} UTC) do not overlap the frames "
                             f"({spans[0]:%Y-%m-%d %H:%M} to {spans[1]:%H:%M} UTC): clock skew or a wrong --tz?")
    return notes


def _series(con, start, end, incidents) -> dict:
    """Per-bucket counts for the HTML chart: frames, error-level log records, incident spans."""
    if start is None or end is None or end <= start:
        return {}
    width = (end - start) / CHART_BUCKETS
    width_us = max(int(width.total_seconds() * 1e6), 1)
    s = _lit(start)
    rows = con.execute(
        f"""
        SELECT b, sum(fr)::BIGINT, sum(er)::BIGINT FROM (
            SELECT least(CAST(date_diff('microsecond', {s}, ts) // {width_us} AS BIGINT), {CHART_BUCKETS - 1}) AS b,
                   1 AS fr, 0 AS er FROM frames WHERE ts IS NOT NULL
            UNION ALL
            SELECT least(CAST(date_diff('microsecond', {s}, ts) // {width_us} AS BIGINT), {CHART_BUCKETS - 1}), 0,
                   CASE WHEN level IN ('error', 'critical') THEN 1 ELSE 0 END FROM logs WHERE ts IS NOT NULL
        ) WHERE b >= 0 GROUP BY b ORDER BY b
        """
    ).fetchall()
    frames = [0] * CHART_BUCKETS
    errors = [0] * CHART_BUCKETS
    for b, fr, er in rows:
        frames[b], errors[b] = fr, er
    return {"start": start, "end": end, "frames": frames, "errors": errors,
            "causes": dict(Counter(i.cause for i in incidents))}
