"""The analyzer's derived DuckDB views over a store (SQL in ``analyzer/sql/view_*.sql``).

``connect`` defines ``frames`` and ``logs``; :func:`add_views` adds, in dependency order:
``verdicts``, ``changes``, ``control_frames``, ``sessions``, ``joins``, ``heartbeats``, ``log_signals``, ``connections`` and
``timeline``, plus the macros of ``macros.sql``. Each file says what its columns mean.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DERIVED_VIEWS = ("verdicts", "changes", "control_frames", "sessions", "joins", "heartbeats", "log_signals", "connections", "timeline")
VERDICTS_DIR = "verdicts"


def verdict_glob(root: Path) -> str | None:
    """Glob of the validator's verdict files (``STORE/verdicts/*.parquet``), None when there are none."""
    directory = root / VERDICTS_DIR
    if directory.is_dir() and any(directory.glob("*.parquet")):
        return str(directory / "*.parquet")
    return None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def add_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Define the macros and derived views on ``con`` (a connection made by ``analyzer.db.connect``)."""
    from analyzer.db import named_sql

    con.execute(named_sql("macros"))
    glob = verdict_glob(root)
    union = ""
    if glob is not None:
        union = (
            # every column of the files: one written before error_kind existed reads it as NULL
            f"UNION ALL BY NAME SELECT * FROM read_parquet({_quote(glob)}, union_by_name = true)"
        )
    for name in DERIVED_VIEWS:
        con.execute(named_sql(f"view_{name}").replace("{verdicts_union}", union))
