"""DuckDB over the store: the ``logs`` and ``frames`` views (and the derived views of
:mod:`analyzer.views`), named SQL, and read-only queries.

The views are defined once per connection and stay live: their glob of committed parts is
expanded each time they are queried, so parts a running recorder commits after
:func:`connect` appear in the next query, and a table with no part yet reads as empty with its
columns and types (see ``sql/view_logs.sql``). Nothing here writes to the store.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import duckdb

from analyzer.views import VERDICTS_DIR, add_views, verdict_glob
from recorder.errors import InputError, StoreError
from recorder.store import TABLES, open_store

# Statement types a read-only query may have. DuckDB parses DESCRIBE, SHOW, SUMMARIZE, VALUES,
# FROM-first and WITH ... SELECT as SELECT; EXPLAIN is checked separately (its target must be
# a SELECT too, since EXPLAIN ANALYZE runs it).
_READ_ONLY_TYPES = {duckdb.StatementType.SELECT}
_EXPLAIN = re.compile(r"\s*explain(?:\s+analyze)?\s+(.*)", re.IGNORECASE | re.DOTALL)
STORE_VARIABLE = "rt_store"  # the store's path, for code that is handed only the connection
_ALLOWED_HINT = "use SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN SELECT"


@dataclass(frozen=True)
class SqlResult:
    """Rows of one query: column names, DuckDB type names and Python values."""

    columns: list[str]
    types: list[str]
    rows: list[tuple]


def named_sql(name: str) -> str:
    """The text of ``analyzer/sql/<name>.sql``."""
    return (resources.files("analyzer") / "sql" / f"{name}.sql").read_text(encoding="utf-8")


def sql_string(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def describe_duckdb_error(err: duckdb.Error) -> str:
    """One line from a DuckDB error: its message and hints, without the LINE/caret context.

    DuckDB puts hints such as ``Candidate bindings: "alpha"`` or ``Did you mean "logs"?`` on
    the lines after the first and separates the query excerpt by a blank line.
    """
    head = []
    for line in str(err).splitlines():
        if not line.strip():
            break
        head.append(line.strip())
    return " ".join(head) or type(err).__name__


def connect(store: str | Path, *, read_only_sql: bool = False) -> duckdb.DuckDBPyConnection:
    """Open ``store`` as an in-memory DuckDB connection with the views ``logs`` and ``frames``.

    The views have exactly the store's columns, in schema order, with timestamps as
    ``TIMESTAMP WITH TIME ZONE``; the session time zone is UTC. They expand their glob at
    every query, so a long-lived connection sees the parts committed after it was opened.

    With ``read_only_sql`` the connection is locked down for untrusted queries: no file
    outside the store's ``logs/`` and ``frames/`` (and a private spill directory) can be read
    or written, no extension can be installed or loaded, and settings cannot be changed.
    :func:`run_sql` adds the statement check of :func:`check_read_only`. Without it the
    connection is an ordinary DuckDB connection (a notebook may read other files too).

    Raises :class:`StoreError` when ``store`` is not a store, has another format version, or
    its parts cannot be read.

    Example::

        con = connect("/var/lib/rt-store")
        con.sql("SELECT source, count(*) FROM logs GROUP BY ALL").pl()
    """
    opened = open_store(store)
    # Absolute paths: allowed_directories compares them, and a relative glob would follow the
    # process's working directory.
    opened = replace(opened, path=opened.path.resolve())
    root = opened.path
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET VARIABLE {STORE_VARIABLE} = {sql_string(str(root))}")  # for pin_window
        for table in TABLES:
            view = named_sql(f"view_{table}")
            con.execute(view.replace("{parts}", sql_string(opened.part_glob(table))))
        add_views(con, root)
        if read_only_sql:
            # DuckDB always allows its spill directory, by default ./.tmp of the working
            # directory: give it a private one so that nothing but the store can be read.
            spill = tempfile.mkdtemp(prefix="rt-analyze-")
            weakref.finalize(con, shutil.rmtree, spill, ignore_errors=True)
            con.execute(f"SET temp_directory = {sql_string(spill)}")
            readable = [root / table for table in TABLES]
            if verdict_glob(root) is not None:
                readable.append(root / VERDICTS_DIR)
            allowed = ", ".join(sql_string(f"{path}/") for path in readable)
            con.execute(f"SET allowed_directories = [{allowed}]")
            con.execute("SET allow_community_extensions = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except duckdb.Error as err:
        con.close()
        raise StoreError(f"{root}: cannot read the store's parts: {describe_duckdb_error(err)}") from None
    return con


def check_read_only(query: str) -> None:
    """Raise :class:`InputError` unless ``query`` is exactly one read-only statement.

    This is the first gate; the second is the locked-down connection of :func:`connect`,
    which refuses file access outside the store whatever the statement. DuckDB types a
    data-modifying CTE (``WITH x AS (DELETE ... RETURNING *) SELECT ...``) as SELECT; it still
    cannot write, because the connection holds no base table, only the two views.
    """
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as err:
        raise InputError(f"query failed: {describe_duckdb_error(err)}") from None
    if not statements:
        raise InputError("no SQL statement given")
    if len(statements) > 1:
        raise InputError(f"one statement at a time, got {len(statements)}")
    statement = statements[0]
    if statement.type == duckdb.StatementType.EXPLAIN:
        target = _EXPLAIN.match(statement.query)
        if target is None:
            raise InputError(f"query refused: write EXPLAIN directly before a SELECT ({_ALLOWED_HINT})")
        check_read_only(target.group(1))
        return
    if statement.type not in _READ_ONLY_TYPES:
        hint = _ALLOWED_HINT
        if statement.type == duckdb.StatementType.PRAGMA:
            hint = "use DESCRIBE logs or SELECT * FROM pragma_table_info('logs')"
        raise InputError(
            f"query refused: only read-only queries run here, got {statement.type.name} ({hint})"
        )


def run_sql(store: str | Path, query: str) -> SqlResult:
    """Run one read-only statement against ``store`` and return all of its rows.

    Raises :class:`InputError` with one line when the query is not a single read-only
    statement, reads a file outside the store, or fails in DuckDB (syntax, unknown column).

    Example::

        run_sql("store", "SELECT level, count(*) AS n FROM logs GROUP BY level ORDER BY n DESC")
    """
    check_read_only(query)
    con = connect(store, read_only_sql=True)
    try:
        cursor = con.execute(query)
        description = cursor.description or []
        rows = cursor.fetchall()
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.PermissionException as err:
        raise InputError(
            f"query refused: {describe_duckdb_error(err)} (only the store's logs/ and frames/ can be read)"
        ) from None
    except duckdb.IOException as err:
        raise StoreError(f"reading the store failed: {describe_duckdb_error(err)}") from None
    except duckdb.Error as err:
        raise InputError(f"query failed: {describe_duckdb_error(err)}") from None
    except (ValueError, OverflowError) as err:
        raise InputError(f"query result cannot be converted: {err}") from None
    finally:
        con.close()
    return SqlResult(
        columns=[d[0] for d in description],
        types=[str(d[1]) for d in description],
        rows=rows,
    )
