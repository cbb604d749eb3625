"""Derived tables of a part: what the analyzer reads of each committed part, computed once.

After :class:`recorder.store.StoreWriter` commits a part, a thread of the writer writes beside it
the tables of :data:`DERIVED` for that part's rows (``STORE/derived/v1/<name>/date=D/<part name>``, see
:meth:`recorder.store.Store.derived_file`): the log records the analyzer understands with their
fields (``log_signals``), the postgres_changes frames flattened and checked (``changes``), the
frames that steer a connection (``control_frames``) and the other frames the client cannot use
(``bad_frames``). Parsing JSON payloads and matching log lines then happens once, when a record
is written, instead of at every report.

They are a cache, never the record: the SQL in ``recorder/sql/derive_*.sql`` is the one
definition, the analyzer runs the same SQL over parts that have no derived tables (parts written
before they existed, or whose derivation failed), and :func:`recorder.store.backfill_derived`
(``rt-record derive``) writes them for such parts.
"""

from __future__ import annotations

import functools
import threading
from importlib import resources

import duckdb
import pyarrow as pa

# table of the store -> names of the tables derived from each of its parts
DERIVED: dict[str, tuple[str, ...]] = {"logs": ("log_signals",), "frames": ("changes", "control_frames", "bad_frames")}
# Order of the rows of a derived table in its file: log_signals grouped by signal, so that the
# row groups of a file hold few signals each and a query for one signal skips the others' row
# groups (Parquet min/max statistics); see ROW_GROUP_ROWS.
ORDER = {"log_signals": 'signal NULLS LAST, ts, file_id, "offset"'}
ROW_GROUP_ROWS = 32_768
# Bumped when the SQL of a derived table changes what it yields: derived files of another
# version are not read (their parts count as not derived) and backfill writes them anew.
DERIVE_VERSION = 1

_PART_ROWS = "part_rows"
_db: duckdb.DuckDBPyConnection | None = None
_db_lock = threading.Lock()


@functools.cache  # read once per process: a recorder derives at every commit
def sql_text(name: str) -> str:
    """The text of ``recorder/sql/<name>.sql``."""
    return (resources.files("recorder") / "sql" / f"{name}.sql").read_text(encoding="utf-8")


def derive_sql(name: str, relation: str) -> str:
    """The query of derived table ``name`` over ``relation`` (a table, view or parenthesised query)."""
    return sql_text(f"derive_{name}").replace("FROM {rows}", f"FROM {relation}")


def macros_sql() -> str:
    """The macros the derived tables use (define them on a connection before :func:`derive_sql`)."""
    return sql_text("derive_macros")


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of this process's in-memory DuckDB database with the macros (one per call: thread-safe)."""
    global _db
    with _db_lock:
        if _db is None:
            db = duckdb.connect(":memory:")
            db.execute(macros_sql())
            _db = db
        return _db.cursor()


def derive_part(table: str, rows: pa.Table) -> dict[str, pa.Table]:
    """The derived tables of one part of ``table`` (``logs`` or ``frames``) holding ``rows``.

    Example::

        derive_part("logs", part)["log_signals"].column("signal")
    """
    names = DERIVED.get(table, ())
    if not names:
        return {}
    cur = _cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")  # a setting of each cursor (its own client context)
        cur.register(_PART_ROWS, rows)
        out = {}
        for name in names:
            query = derive_sql(name, _PART_ROWS)
            if name in ORDER:
                query = f"SELECT * FROM ({query}) ORDER BY {ORDER[name]}"
            result = cur.sql(query)
            # to_arrow_table since DuckDB 1.4 (fetch_arrow_table, deprecated there, before)
            out[name] = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
        return out
    finally:
        cur.close()
