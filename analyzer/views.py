"""The analyzer's derived DuckDB views over a store (SQL in ``analyzer/sql/view_*.sql``).

``connect`` defines ``frames`` and ``logs``; :func:`add_views` adds, in dependency order:
``verdicts``, ``changes_base``, ``changes``, ``control_frames``, ``bad_frames``, ``sessions``, ``joins``,
``heartbeats``, ``log_signals``, ``connections`` and ``timeline``, plus the macros of ``macros.sql``. Each
file says what its columns mean. ``changes_base``, ``control_frames``, ``bad_frames`` and ``log_signals`` are the derived
tables of the recorder (``recorder/sql/derive_*.sql``) computed here over every frame and log record;
:func:`analyzer.report.pin_window` reads them from the files the recorder wrote beside each part instead.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from recorder.derive import derive_sql, macros_sql

DERIVED_VIEWS = ("verdicts", "changes_base", "changes", "control_frames", "bad_frames", "sessions", "joins",
                 "heartbeats", "log_signals", "connections", "timeline")
# views that are the recorder's derived tables: name -> the store table they are derived from
RECORDER_DERIVED = {"changes_base": ("changes", "frames"), "control_frames": ("control_frames", "frames"),
                    "bad_frames": ("bad_frames", "frames"), "log_signals": ("log_signals", "logs")}
VERDICTS_DIR = "verdicts"


def verdict_glob(root: Path) -> str | None:
    """Glob of the validator's verdict files (``STORE/verdicts/*.parquet``), None when there are none."""
    directory = root / VERDICTS_DIR
    if directory.is_dir() and any(directory.glob("*.parquet")):
        return str(directory / "*.parquet")
    return None


def _view_sql(name: str, glob: str | None) -> str:
    """The CREATE VIEW statement of derived view ``name``; ``glob``: :func:`verdict_glob` of the store."""
    from analyzer.db import named_sql, sql_string

    if name in RECORDER_DERIVED:
        derived, table = RECORDER_DERIVED[name]
        return f"CREATE OR REPLACE VIEW {name} AS\n{derive_sql(derived, table)}"
    text = named_sql(f"view_{name}")
    if name == "verdicts":
        union = ""
        if glob is not None:
            # every column of the files: one written before error_kind existed reads it as NULL
            union = f"UNION ALL BY NAME SELECT * FROM read_parquet({sql_string(glob)}, union_by_name = true)"
        return text.replace("{verdicts_union}", union)
    if name == "changes":
        # the recorder's changes keep the payload of invalid ones only: fetch it for frames that
        # only a verdict refutes (no verdict files, no frame to fetch)
        payload, join = "b.payload", ""
        if glob is not None:
            payload = "coalesce(b.payload, fp.payload)"
            join = ("LEFT JOIN (SELECT f.session_id, f.seq, f.payload FROM frames f SEMI JOIN verdicts r "
                    "ON r.session_id = f.session_id AND r.seq = f.seq AND r.valid = false "
                    "WHERE f.event = 'postgres_changes' AND f.direction = 'in') fp "
                    "ON b.payload IS NULL AND fp.session_id = b.session_id AND fp.seq = b.seq")
        return text.replace("{payload}", payload).replace("{payload_join}", join)
    return text


def add_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Define the macros and derived views on ``con`` (a connection made by ``analyzer.db.connect``)."""
    from analyzer.db import named_sql

    con.execute(macros_sql())
    con.execute(named_sql("macros"))
    glob = verdict_glob(root)
    for name in DERIVED_VIEWS:
        con.execute(_view_sql(name, glob))
