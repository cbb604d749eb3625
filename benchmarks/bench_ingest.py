"""Log ingestion benchmark: ``rt-record logs`` against a plain per-line ``re`` loop, same run.

Both write the same rows (LOGS_SCHEMA: UTC time, level, logger, message, error code,
redacted raw) as zstd Parquet. Also measures peak RSS while ingesting a large file in a
child process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.gen_logs import generate
from recorder.logfiles import record_logs
from recorder.logpresets import LEVELS, error_code_of
from recorder.redact import redact_text
from recorder.store import LOGS_SCHEMA

LINE_RX = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) - (\S+?) - ([A-Za-z]+) - (.*)$")


def plain_loop(path: str, out_dir: str, tz: str = "Europe/Berlin", scrub: bool = True) -> int:
    """The baseline: one ``re`` per line, records built in Python lists, Parquet via pyarrow."""
    zone = ZoneInfo(tz)
    cols: dict[str, list] = {name: [] for name in LOGS_SCHEMA.names}
    written = 0
    part = 0

    def flush():
        nonlocal part, cols
        table = pa.Table.from_pydict(cols, schema=LOGS_SCHEMA)
        pq.write_table(table, os.path.join(out_dir, f"part-{part}.parquet"), compression="zstd", compression_level=1)
        part += 1
        cols = {name: [] for name in LOGS_SCHEMA.names}

    def finish(rec):
        if rec is None:
            return
        ts, level, logger, first_msg, raw_lines, offset = rec
        raw = "\n".join(raw_lines)
        message = "\n".join([first_msg, *raw_lines[1:]])
        cols["ts"].append(ts)
        cols["source"].append("bench")
        cols["file"].append(path)
        cols["file_id"].append("baseline")
        cols["offset"].append(offset)
        cols["level"].append(LEVELS.get(level.lower()))
        cols["logger"].append(logger)
        cols["message"].append(redact_text(message) if scrub else message)
        cols["error_code"].append(error_code_of(message) if scrub else None)
        cols["project"].append(None)
        cols["raw"].append(redact_text(raw) if scrub else raw)
        cols["parsed"].append(True)

    rec = None
    pos = 0
    with open(path, "rb") as fh:
        for bline in fh:
            line = bline.decode("utf-8", "replace").rstrip("\n")
            m = LINE_RX.match(line)
            if m:
                finish(rec)
                written += 1
                if len(cols["ts"]) >= 250_000:
                    flush()
                local = datetime.fromisoformat(m.group(1)).replace(microsecond=int(m.group(2)) * 1000, tzinfo=zone)
                rec = (local.astimezone(UTC), m.group(4), m.group(3), m.group(5), [line], pos)
            elif rec is not None:
                rec[4].append(line)
            pos += len(bline)
    finish(rec)
    flush()
    return written


def ingest_ours(path: str, store: str) -> int:
    summary = record_logs([path], store, preset="python", tz="Europe/Berlin", say=lambda m: None)
    return summary[0].records


def peak_rss_mb(path: str, store: str) -> float:
    """Peak RSS of ``rt-record logs`` in a child process, in MB.

    Measured by a small intermediate Python process: a child forked straight from this (large)
    benchmark process would start its high-water mark at our RSS, since Linux keeps ``ru_maxrss``
    across fork and exec.
    """
    cmd = [sys.executable, "-m", "recorder.cli", "logs", path, "--store", store, "--tz", "UTC", "--quiet"]
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def run(lines: int = 1_000_000, big_bytes: int = 2 << 30, rounds: int = 2) -> dict:
    tmp = tempfile.mkdtemp(prefix="rtbb-bench-")
    try:
        path = os.path.join(tmp, "bot.log")
        size = generate(path, lines)
        best_ours = best_loop = best_bare = float("inf")
        for r in range(rounds):  # alternate, keep the best of each (shared, noisy machine)
            store = os.path.join(tmp, f"store{r}")
            t = time.perf_counter()
            n_ours = ingest_ours(path, store)
            best_ours = min(best_ours, time.perf_counter() - t)
            out = os.path.join(tmp, f"loop{r}")
            os.mkdir(out)
            t = time.perf_counter()
            n_loop = plain_loop(path, out)
            best_loop = min(best_loop, time.perf_counter() - t)
            shutil.rmtree(out)
            os.mkdir(out)
            t = time.perf_counter()
            plain_loop(path, out, scrub=False)
            best_bare = min(best_bare, time.perf_counter() - t)
            shutil.rmtree(store)
            shutil.rmtree(out)
        assert n_ours == n_loop, (n_ours, n_loop)
        result = {
            "lines": lines,
            "records": n_ours,
            "mb": size / 1e6,
            "ours_s": best_ours,
            "loop_s": best_loop,
            "ours_lines_per_s": lines / best_ours,
            "loop_lines_per_s": lines / best_loop,
            "ours_mb_per_s": size / 1e6 / best_ours,
            "loop_mb_per_s": size / 1e6 / best_loop,
            "ratio": best_loop / best_ours,
            "bare_s": best_bare,
            "bare_ratio": best_bare / best_ours,
        }
        os.remove(path)
        if big_bytes:
            big = os.path.join(tmp, "big.log")
            big_lines = int(lines * big_bytes / size)
            result["big_mb"] = generate(big, big_lines) / 1e6
            result["big_peak_rss_mb"] = peak_rss_mb(big, os.path.join(tmp, "bigstore"))
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> list[str]:
    out = [
        f"log ingest, {r['lines']:,} lines ({r['mb']:.0f} MB, {r['records']:,} records, 5% multi-line):",
        f"  rt-record logs : {r['ours_s']:.2f} s  {r['ours_lines_per_s']:,.0f} lines/s  {r['ours_mb_per_s']:.0f} MB/s",
        f"  plain re loop  : {r['loop_s']:.2f} s  {r['loop_lines_per_s']:,.0f} lines/s  {r['loop_mb_per_s']:.0f} MB/s",
        f"  ratio          : {r['ratio']:.2f}x the plain loop (target >= 3.5x)",
        f"  plain loop without redaction or error codes (not the same Parquet): {r['bare_s']:.2f} s, "
        f"ours {r['bare_ratio']:.2f}x faster",
    ]
    if "big_peak_rss_mb" in r:
        out.append(f"  peak RSS ingesting {r['big_mb']:.0f} MB: {r['big_peak_rss_mb']:.0f} MB (target <= 500 MB)")
    return out


if __name__ == "__main__":
    print("\n".join(report(run())))
