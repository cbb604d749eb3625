"""`rt-record logs` as a person meets it: the progress bar on a terminal, quiet mode, exit codes."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from benchmarks.gen_logs import generate


def run_in_terminal(args: list[str]) -> tuple[int, str]:
    """Run with stderr and stdout on a pseudo-terminal; return the exit code and all it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_on_a_terminal_and_not_with_quiet(tmp_path):
    log = tmp_path / "bot.log"
    generate(str(log), 120_000)
    code, out = run_in_terminal(
        [sys.executable, "-m", "recorder.cli", "logs", str(log), "--store", str(tmp_path / "a"), "--tz", "UTC"]
    )
    assert code == 0
    assert "ingesting" in out and "MB" in out  # rich's bar with the bytes read
    assert f"{log}: " in out and " records, " in out
    code, out = run_in_terminal(
        [sys.executable, "-m", "recorder.cli", "logs", str(log), "--store", str(tmp_path / "b"), "--tz", "UTC",
         "--quiet"]
    )
    assert code == 0
    assert out == ""


def test_no_progress_bar_when_not_a_terminal(tmp_path):
    log = tmp_path / "bot.log"
    generate(str(log), 50_000)
    r = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "logs", str(log), "--store", str(tmp_path / "s"), "--tz", "UTC"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0
    assert "ingesting" not in r.stderr
    assert r.stderr.startswith(f"{log}: preset python (auto-detected, fit 0.")  # 5 % are continuation lines
    assert r.stderr.count("\n") == 1


def test_bad_usage_is_one_line_and_exit_2(tmp_path):
    cases = [
        (["logs", str(tmp_path / "nope.log"), "--store", str(tmp_path / "s")], "nope.log: no such file"),
        (["logs", str(tmp_path), "--store", str(tmp_path / "s")], "is a directory"),
        (["logs", "x.log", "--store", str(tmp_path / "s"), "--tz", "Mars/Olympus"], "is not a known time zone"),
        (["logs", "x.log", "--store", str(tmp_path / "s"), "--date", "24.11.2026"], "is not YYYY-MM-DD"),
        (["logs", "x.log", "--store", str(tmp_path / "s"), "--pattern", "%(asctime)s %(nope)s %(message)s"],
         "is not a logging attribute"),
        (["logs", "x.log", "--store", str(tmp_path / "s"), "--preset", "xml"], "Invalid value for '--preset'"),
        (["logs", "x.log"], "Missing option '--store'"),
    ]
    for args, needle in cases:
        r = subprocess.run([sys.executable, "-m", "recorder.cli", *args], capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and needle in r.stderr, (args, r.stderr)
        assert not (tmp_path / "s").exists()  # nothing half-written
