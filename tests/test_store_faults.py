"""A store on a read-only or full file system: one clear line, exit 2, nothing lost or doubled.

As root (CI) the file systems are real: a small tmpfs, remounted read-only or filled up.
Without root the same failures come from directory permissions and RLIMIT_FSIZE.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = os.geteuid() == 0


def run_logs(*args, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", "logs", *map(str, args), "--tz", "UTC", "--quiet"],
        capture_output=True,
        text=True,
        preexec_fn=limit if limit_bytes else None,
    )


@pytest.fixture
def small_fs(tmp_path):
    """A directory on a 1 MiB file system (root), or a plain directory (else)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = False
    if ROOT:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
        mounted = r.returncode == 0
    yield mnt, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def big_log(path: Path, lines: int) -> None:
    with open(path, "w") as fh:
        for n in range(lines):
            fh.write(f"2026-11-24 08:00:{n % 60:02d},000 - bot - INFO - line {n} " + "x" * 80 + "\n")


def count_rows(store: Path) -> tuple[int, int]:
    files = list(store.glob("logs/date=*/part-*.parquet"))
    tables = [pq.read_table(f, columns=["offset"]) for f in files]
    offsets = [o for t in tables for o in t["offset"].to_pylist()]
    return len(offsets), len(set(offsets))


def test_read_only_store_location(small_fs, tmp_path):
    mnt, mounted = small_fs
    log = tmp_path / "bot.log"
    big_log(log, 3)
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    else:
        mnt.chmod(0o555)
    r = run_logs(log, "--store", mnt / "store")
    assert r.returncode == 2
    assert r.stderr.startswith("rt-record: error: ") and r.stderr.count("\n") == 1
    assert "cannot create store" in r.stderr and "Traceback" not in r.stderr


def test_full_disk_then_retry_records_everything_once(small_fs, tmp_path):
    mnt, mounted = small_fs
    log = tmp_path / "bot.log"
    big_log(log, 40_000)  # about 4 MB of log text: more than the file system holds
    store = mnt / "store"
    r = run_logs(log, "--store", store, limit_bytes=None if mounted else 600_000)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cannot write to store" in r.stderr or "cannot commit to store" in r.stderr
    if mounted:  # the operator frees space
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
    r = run_logs(log, "--store", store)
    assert r.returncode == 0, r.stderr
    assert count_rows(store) == (40_000, 40_000)
