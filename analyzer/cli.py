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


main = main_wrapper(cli, "rt-analyze")

if __name__ == "__main__":
    main()
