"""`rt-record logs --follow` with real files, real rotation and real kill -9."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.store import LOGS_SCHEMA


def a_log_line(n: int, level: str = "INFO") -> str:
    return f"2026-11-24 08:{n // 60 % 60:02d}:{n % 60:02d},{n % 1000:03d} - bot.worker - {level} - line {n}\n"


def stored(store: Path) -> pa.Table:
    files = sorted(store.glob("logs/date=*/part-*.parquet"))
    if not files:
        return LOGS_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=LOGS_SCHEMA) for f in files])


def messages(store: Path) -> list[str]:
    """First lines of the stored messages (continuation lines such as tracebacks cut off)."""
    return sorted((m.split("\n")[0] for m in stored(store)["message"].to_pylist()), key=lambda m: (len(m), m))


def wait_for(store: Path, n: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = messages(store)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    return messages(store)


def expected(numbers) -> list[str]:
    return sorted((f"line {n}" for n in numbers), key=lambda m: (len(m), m))


class Follower:
    def __init__(self, store: Path, *paths: Path):
        self.store, self.paths = store, paths
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recorder.cli", "logs", *map(str, self.paths), "--store", str(self.store),
             "--follow", "--tz", "UTC", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=20)


@pytest.fixture
def follower(tmp_path):
    made = []

    def make(*paths):
        f = Follower(tmp_path / "store", *paths)
        made.append(f)
        return f

    yield make
    for f in made:
        if f.proc and f.proc.poll() is None:
            f.kill()


def append(path: Path, numbers) -> None:
    with open(path, "a") as fh:
        for n in numbers:
            fh.write(a_log_line(n))


def test_follows_growth_and_stops_cleanly_on_sigterm_and_sigint(tmp_path, follower):
    log = tmp_path / "bot.log"
    append(log, range(0, 50))
    f = follower(log)
    f.start()
    assert wait_for(f.store, 50) == expected(range(50))
    append(log, range(50, 120))
    assert wait_for(f.store, 120) == expected(range(120))
    code, err = f.stop(signal.SIGTERM)
    assert code == 0, err
    append(log, range(120, 130))
    f.start()
    assert wait_for(f.store, 130) == expected(range(130))
    code, err = f.stop(signal.SIGINT)
    assert code == 0, err
    assert messages(f.store) == expected(range(130))


def test_partial_last_line_waits_until_complete(tmp_path, follower):
    log = tmp_path / "bot.log"
    append(log, range(3))
    with open(log, "a") as fh:
        fh.write("2026-11-24 08:10:00,000 - bot.worker - INFO - line 3")
    f = follower(log)
    f.start()
    assert wait_for(f.store, 3) == expected(range(3))
    time.sleep(2.0)  # longer than the idle emission delay: still no half line
    assert messages(f.store) == expected(range(3))
    with open(log, "a") as fh:
        fh.write(" completed\n")
    got = wait_for(f.store, 4)
    assert "line 3 completed" in got and len(got) == 4
    assert f.stop()[0] == 0


def test_missing_file_is_waited_for(tmp_path, follower):
    log = tmp_path / "later.log"
    f = follower(log)
    f.start()
    time.sleep(0.6)
    assert f.proc.poll() is None
    append(log, range(5))
    assert wait_for(f.store, 5) == expected(range(5))
    assert f.stop()[0] == 0
    assert set(stored(f.store)["source"].to_pylist()) == {"later"}


def test_rename_rotation_while_running_keeps_in_flight_writes(tmp_path, follower):
    log = tmp_path / "bot.log"
    append(log, range(0, 40))
    f = follower(log)
    f.start()
    assert len(wait_for(f.store, 40)) == 40
    old = open(log, "a")  # a logging handler that still holds the old file
    os.rename(log, tmp_path / "bot.log.1")
    old.write("".join(a_log_line(n) for n in range(40, 45)))  # written after the rename
    old.flush()
    append(log, range(45, 60))  # the new file
    time.sleep(0.3)
    old.write("".join(a_log_line(n) for n in range(60, 62)))
    old.close()
    assert wait_for(f.store, 62) == expected(range(62))
    assert f.stop()[0] == 0
    assert messages(f.store) == expected(range(62))


def test_copytruncate_while_running(tmp_path, follower):
    log = tmp_path / "bot.log"
    append(log, range(0, 30))
    f = follower(log)
    f.start()
    assert len(wait_for(f.store, 30)) == 30
    f.proc.send_signal(signal.SIGSTOP)  # lines arrive while the recorder is not looking
    append(log, range(30, 40))
    shutil.copyfile(log, tmp_path / "bot.log.1")
    with open(log, "r+") as fh:
        fh.truncate(0)
    append(log, range(40, 55))
    f.proc.send_signal(signal.SIGCONT)
    assert wait_for(f.store, 55) == expected(range(55))
    assert f.stop()[0] == 0
    assert messages(f.store) == expected(range(55))


def test_rotation_while_down(tmp_path, follower):
    log = tmp_path / "bot.log"
    append(log, range(0, 20))
    f = follower(log)
    f.start()
    assert len(wait_for(f.store, 20)) == 20
    assert f.stop()[0] == 0
    append(log, range(20, 30))  # written after the recorder stopped, before rotation
    os.rename(log, tmp_path / "bot.log.1")
    append(log, range(30, 45))
    f.start()
    assert wait_for(f.store, 45) == expected(range(45))
    assert f.stop()[0] == 0
    assert messages(f.store) == expected(range(45))


def test_copytruncate_while_down(tmp_path, follower):
    log = tmp_path / "bot.log"
    append(log, range(0, 20))
    f = follower(log)
    f.start()
    assert len(wait_for(f.store, 20)) == 20
    assert f.stop()[0] == 0
    append(log, range(20, 25))
    shutil.copyfile(log, tmp_path / "bot.log.1")
    with open(log, "r+") as fh:
        fh.truncate(0)
    append(log, range(25, 60))  # larger than before: the size alone would not show it
    f.start()
    assert wait_for(f.store, 60) == expected(range(60))
    assert f.stop()[0] == 0
    assert messages(f.store) == expected(range(60))


def test_same_inode_new_content_while_down_is_a_new_file(tmp_path, follower):
    """Inode reuse: device and inode match the checkpoint, the first bytes do not."""
    log = tmp_path / "bot.log"
    append(log, range(0, 10))
    f = follower(log)
    f.start()
    assert len(wait_for(f.store, 10)) == 10
    assert f.stop()[0] == 0
    ino = os.stat(log).st_ino
    with open(log, "w") as fh:  # same inode, rewritten from scratch with other lines
        fh.write("".join(a_log_line(n) for n in range(100, 130)))
    assert os.stat(log).st_ino == ino
    f.start()
    assert wait_for(f.store, 40) == expected([*range(10), *range(100, 130)])
    assert f.stop()[0] == 0
    ids = set(stored(f.store)["file_id"].to_pylist())
    assert len(ids) == 2  # two identities for the two contents of one inode


def test_kill_minus_nine_at_random_moments_loses_and_duplicates_nothing(tmp_path, follower):
    log = tmp_path / "bot.log"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log)], stdout=subprocess.PIPE, text=True
    )
    f = follower(log)
    rnd = random.Random(20261128)
    try:
        for _ in range(12):
            f.start()
            time.sleep(rnd.uniform(0.15, 1.2))
            f.kill()  # SIGKILL
        writer.terminate()
        total = int(writer.communicate(timeout=20)[0].strip())
    finally:
        if writer.poll() is None:
            writer.kill()
    f.start()
    got = wait_for(f.store, total, timeout=30)
    assert f.stop()[0] == 0
    table = stored(f.store)
    assert len(got) == total, f"{len(got)} rows for {total} lines"
    assert got == expected(range(total))
    keys = list(zip(table["file_id"].to_pylist(), table["offset"].to_pylist(), strict=True))
    assert len(set(keys)) == len(keys)
    # the tracebacks stayed inside the record before them, whatever instant the kills hit
    tracebacks = [m for m in table["message"].to_pylist() if "Traceback" in m]
    assert len(tracebacks) == total // 100
    assert all(m.endswith("ValueError: boom") and m.count("\n") == 3 for m in tracebacks)
    spans = sum(len(r.encode()) + 1 for r in table["raw"].to_pylist())
    assert spans == log.stat().st_size  # every byte of the file is in exactly one record


WRITER = r"""
import signal, sys, time
path = sys.argv[1]
n = 0
stop = False
def handler(*a):
    global stop
    stop = True
signal.signal(signal.SIGTERM, handler)
with open(path, "a", buffering=1) as fh:
    while not stop:
        for _ in range(25):
            fh.write(f"2026-11-24 08:{n // 60 % 60:02d}:{n % 60:02d},{n % 1000:03d} - bot.worker - INFO - line {n}\n")
            n += 1
        if n % 100 == 0:
            fh.write("Traceback (most recent call last):\n  File 'x.py', line 1\nValueError: boom\n")
        time.sleep(0.01)
print(n)
"""
