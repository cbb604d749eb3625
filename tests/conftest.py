"""Shared test builders: log lines in the formats ``rt-record logs`` reads, the bundled fixtures,
and small helpers to run the real CLI and read a store back.

Builders are session-scoped fixtures returning plain functions, so hypothesis tests can use them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_LOGS = ROOT / "fixtures" / "logs"


def _a_log_line(
    message: str = "hello",
    *,
    ts: str = "2026-11-24 08:00:00,123",
    logger: str = "bot.main",
    level: str = "INFO",
) -> str:
    """One line of Python logging's ``%(asctime)s - %(name)s - %(levelname)s - %(message)s``.

    >>> _a_log_line("inserted order 4711 into public.orders", logger="bot.orders")
    '2026-11-24 08:00:00,123 - bot.orders - INFO - inserted order 4711 into public.orders'
    """
    return f"{ts} - {logger} - {level} - {message}"


def _a_server_line(
    message: str = "Starting replication for Broadcast Changes",
    *,
    time: str = "08:00:01.318",
    level: str = "info",
    meta: str = "project=realtime-dev external_id=realtime-dev ",
    docker: str | None = None,
) -> str:
    """One Realtime server console line (realtime-protocol.md §5.3), optionally ``docker logs -t`` stamped."""
    stamp = f"{docker} " if docker else ""
    return f"{stamp}{time} {meta}[{level}] {message}"


def _a_json_line(message: str = "hello", **fields) -> str:
    """One python-json-logger line; ``fields`` are added after the default keys."""
    obj = {"asctime": "2026-11-24 08:00:00,123", "name": "bot.main", "levelname": "INFO", "message": message}
    obj.update(fields)
    return json.dumps(obj)


def _run_rt_record(*args: str, cwd: str | Path = ROOT) -> subprocess.CompletedProcess:
    """``rt-record ARGS`` in a subprocess (the real CLI, exit code and streams as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _query_logs(store: str | Path, where: str = "true", order: str = 'file, "offset"') -> list[dict]:
    """Rows of the store's ``logs`` view (through ``analyzer.connect``) as dicts."""
    from analyzer import connect

    con = connect(store)
    try:
        cur = con.execute(f"SELECT * FROM logs WHERE {where} ORDER BY {order}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="session")
def a_log_line():
    return _a_log_line


@pytest.fixture(scope="session")
def a_server_line():
    return _a_server_line


@pytest.fixture(scope="session")
def a_json_line():
    return _a_json_line


@pytest.fixture(scope="session")
def fixture_logs() -> Path:
    """``fixtures/logs``: the incident day of 2026-11-24 (see its README.md)."""
    return FIXTURE_LOGS


@pytest.fixture(scope="session")
def rt_record():
    return _run_rt_record


@pytest.fixture(scope="session")
def query_logs():
    return _query_logs
