"""``rt-analyze``: the analyzer's command line. Thin: parse options, call :mod:`analyzer.db`, print.

Output renderers for query rows live here too (table, csv, json); notebooks get the same rows
from :func:`analyzer.db.run_sql` or a DataFrame from :func:`analyzer.db.connect`.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import math
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TextIO

import click
from rich.cells import cell_len

from analyzer.db import SqlResult, run_sql
from recorder.clikit import format_option, main_wrapper, store_option
from recorder.errors import InputError

_NUMERIC_TYPES = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
    "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
)  # fmt: skip


def _iso_duration(value: dt.timedelta) -> str:
    sign, value = ("-", -value) if value < dt.timedelta(0) else ("", value)
    seconds = value.seconds + value.microseconds / 1e6
    days = f"{value.days}D" if value.days else ""
    return f"{sign}P{days}T{seconds:g}S"


def json_value(value: object) -> object:
    """``value`` as plain JSON data: ISO 8601 times (UTC as Z), base64 binary, NaN as None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _iso_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def text_value(value: object, null: str = "") -> str:
    """``value`` as one text cell, written the way :func:`json_value` writes it."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    data = json_value(value)
    if isinstance(data, list | dict):
        return json.dumps(data, ensure_ascii=False)
    return str(data)


def _cell_lines(text: str) -> list[str]:
    # Keep each line of a multi-line value (tracebacks, EXPLAIN plans) and show the other
    # control characters that would break alignment.
    text = text.replace("\r\n", "\n").replace("\r", "\\r").replace("\t", "\\t")
    return text.split("\n")


def render_table(result: SqlResult, out: TextIO) -> None:
    """Aligned text, one column per result column; values are never cut off, NULL reads NULL."""
    numeric = [t.startswith(_NUMERIC_TYPES) for t in result.types]
    header = [_cell_lines(name) for name in result.columns]
    body = [[_cell_lines(text_value(v, null="NULL")) for v in row] for row in result.rows]
    widths = [max(cell_len(line) for line in cell) for cell in header]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(cell_len(line) for line in cell))

    def emit(cells: list[list[str]], align_numbers: bool) -> None:
        for k in range(max((len(c) for c in cells), default=1)):
            parts = []
            for i, cell in enumerate(cells):
                line = cell[k] if k < len(cell) else ""
                pad = " " * (widths[i] - cell_len(line))
                parts.append(pad + line if align_numbers and numeric[i] else line + pad)
            out.write(" | ".join(parts).rstrip() + "\n")

    if result.columns:
        emit(header, align_numbers=False)
        out.write("-+-".join("-" * w for w in widths) + "\n")
        for row in body:
            emit(row, align_numbers=True)
    n = len(result.rows)
    out.write(f"({n} row{'' if n == 1 else 's'})\n")


def render_csv(result: SqlResult, out: TextIO) -> None:
    """RFC 4180: a header row, CRLF line ends, NULL as an empty field."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([text_value(v) for v in row])


def render_json(result: SqlResult, out: TextIO) -> None:
    """A JSON array with one object per row, keyed by column name."""
    seen: set[str] = set()
    for name in result.columns:
        if name in seen:
            raise InputError(f"column name {name!r} appears twice; give the columns distinct names with AS")
        seen.add(name)
    out.write("[")
    for i, row in enumerate(result.rows):
        obj = {name: json_value(v) for name, v in zip(result.columns, row, strict=True)}
        out.write(("\n" if i == 0 else ",\n") + json.dumps(obj, ensure_ascii=False, allow_nan=False))
    out.write("\n]\n" if result.rows else "]\n")


RENDERERS: dict[str, Callable[[SqlResult, TextIO], None]] = {
    "table": render_table,
    "csv": render_csv,
    "json": render_json,
}


@click.group(
    help="""Study a store recorded by rt-record. Reads the store, never writes it.

\b
Example:
  rt-analyze sql "SELECT source, level, count(*) AS n FROM logs GROUP BY ALL ORDER BY n DESC" --store ./store
""",
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli() -> None:
    pass


@cli.command(
    "sql",
    help="""Run one read-only SQL query over the views logs and frames and print its rows.

Only one statement runs, and it must read: SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW,
SUMMARIZE or EXPLAIN SELECT. Files outside the store's logs/ and frames/ cannot be read.
Columns are those of design.md ("The store"); offset is an SQL keyword, so write "offset".

Times are UTC and print as ISO 8601 with Z. Binary values (frames.raw) print as base64;
SELECT decode(raw) shows a text frame as text. --format table: aligned text, values never
cut off, NULL as NULL; csv: RFC 4180 with a header row, NULL as an empty field; json: an
array of objects, NULL and NaN as null.

\b
Examples:
  rt-analyze sql "SELECT ts, source, message FROM logs WHERE error_code = 'UnableToBroadcastChanges' ORDER BY ts" --store ./store
  rt-analyze sql "SELECT topic, event, count(*) AS n FROM frames GROUP BY ALL" --store ./store --format json
  rt-analyze sql "DESCRIBE frames" --store ./store
""",
)
@click.argument("query")
@store_option()
@format_option(tuple(RENDERERS), "table")
def sql_command(query: str, store: str, fmt: str) -> None:
    result = run_sql(store, query)
    RENDERERS[fmt](result, sys.stdout)


def window_options(fn: Callable) -> Callable:
    """``--since`` / ``--until``: the window of a command (ISO 8601, UTC when no zone is given)."""
    fn = click.option("--until", metavar="T", help="End of the window, exclusive (ISO 8601, e.g. 2026-11-24T09:00Z).")(fn)
    return click.option("--since", metavar="T", help="Start of the window, inclusive (ISO 8601; UTC unless a zone is given).")(fn)


def _window(since: str | None, until: str | None):
    from analyzer.report import parse_time

    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    if start is not None and end is not None and start >= end:
        raise InputError(f"--since {since} is not before --until {until}")
    return start, end


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        raise InputError(f"{output}: cannot write the report ({err.strerror or err})") from None


@cli.command(
    "report",
    help="""Find incidents (with the rows that prove them) and evaluate the escalation rules.

Causes: payload_missing, invalid_payload, payload_too_large, network, subscription_race,
subscription_failure, rls, auth, db_connectivity. Escalation rules and their defaults:
realtime_down (for 10m), subscription_failures (3 consecutive, per topic), db_connectivity
(for 5m), payload_error_rate (rate 0.05 over 5m, min_events 20); override them with a TOML
file (--thresholds). A rule whose inputs were not recorded says so ("breached": null).

Exit code: 0 nothing to escalate, 1 at least one escalation rule breached, 2 usage or input
error. --notify POSTs a Slack-compatible message when there is something to escalate.

\b
Examples:
  rt-analyze report --store ./store
  rt-analyze report --store ./store --since 2026-11-24T08:00Z --until 2026-11-24T09:00Z --format json
  rt-analyze report --store ./store --format html --output report.html --thresholds thresholds.toml
  rt-analyze report --store ./store --notify https://hooks.slack.com/services/T000/B000/XXXX
""",
)
@store_option()
@click.option("--thresholds", "thresholds_path", type=click.Path(dir_okay=False), help="TOML file of escalation thresholds.")
@window_options
@format_option(("text", "json", "markdown", "html"), "text")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the report to FILE instead of stdout.")
@click.option("--notify", "notify_url", metavar="URL", help="POST a Slack-compatible message here when something escalates.")
@click.option("--writes", "writes_path", type=click.Path(dir_okay=False),
              help="Expected changes (JSON lines or CSV: ts, table, type, id) to check for missed events.")
def report_command(store, thresholds_path, since, until, fmt, output, notify_url, writes_path) -> int:
    from analyzer.notify import notify
    from analyzer.render import RENDERERS
    from analyzer.report import build_report
    from analyzer.thresholds import load_thresholds

    thresholds = load_thresholds(thresholds_path)
    start, end = _window(since, until)
    report = build_report(store, start, end, thresholds, writes=writes_path, chart=fmt == "html")
    color = fmt == "text" and output is None and sys.stdout.isatty()
    _emit(RENDERERS[fmt](report, color=color), output)
    if notify_url and report.escalate:
        notify(notify_url, report)
    return 1 if report.escalate else 0


@cli.command(
    "status",
    help="""The bot's /status: connected or not and since when, channels and their state, the last
heartbeat and its round trip, and whether the bot fell back to polling.

\b
Examples:
  rt-analyze status --store ./store
  rt-analyze status --store ./store --until 2026-11-24T08:50Z --format json
""",
)
@store_option()
@window_options
@format_option(("text", "json"), "text")
def status_command(store, since, until, fmt) -> None:
    from analyzer.status import build_status, render_status_text

    start, end = _window(since, until)
    status = build_status(store, start, end)
    _emit(json.dumps(status, indent=2) + "\n" if fmt == "json" else render_status_text(status), None)


@cli.command(
    "stats",
    help="""The bot's /stats: frames by topic and event, changes per table, payload error rate,
reconnects, join latency and heartbeat round trip (p50/p99).

\b
Examples:
  rt-analyze stats --store ./store
  rt-analyze stats --store ./store --since 2026-11-24T08:00Z --format json
""",
)
@store_option()
@window_options
@format_option(("text", "json"), "text")
def stats_command(store, since, until, fmt) -> None:
    from analyzer.status import build_stats, render_stats_text

    start, end = _window(since, until)
    stats = build_stats(store, start, end)
    _emit(json.dumps(stats, indent=2, default=json_value) + "\n" if fmt == "json" else render_stats_text(stats), None)


main = main_wrapper(cli, "rt-analyze")

if __name__ == "__main__":
    main()
