"""analyzer studies the tape and never writes it.

DuckDB views over the store (:func:`connect`), named SQL in ``analyzer/sql``, and the
commands of ``rt-analyze``.
"""

from analyzer.db import SqlResult, connect, run_sql

__all__ = ["SqlResult", "connect", "run_sql"]
