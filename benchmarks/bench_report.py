"""Report benchmark: ``rt-analyze report`` over a synthetic store against one bare DuckDB scan.

The store (default 10M frames + 10M log records) is written directly as zstd Parquet parts in
the store layout by DuckDB (no write-ahead log): a client with heartbeats every 25 s, a stream
of postgres_changes (1 % invalid), broadcasts, joins, reconnects with abnormal closes, and logs
of realtime-py at DEBUG (and 1006 closes), a bot (health checks, writes and the changes it received),
and server lines with ``UnableToBroadcastChanges`` every 80 s; then the tables the recorder derives
from each part after committing it (``recorder.store.backfill_derived``, timed apart). The baseline,
measured in the same run, is one DuckDB query that reads every value of every column of the same
files (parts and derived tables) once. Each side runs in its own child
process so that its peak RSS is its own.

    python -m benchmarks report            # 10M + 10M
    RT_BENCH_ROWS=1000000 python -m benchmarks report
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.store import backfill_derived

ROWS = int(os.environ.get("RT_BENCH_ROWS", "10000000"))
PARTS = 8

FRAMES_SQL = """
COPY (
  WITH g AS (SELECT i, TIMESTAMPTZ '2026-11-24 00:00:00+00' + to_microseconds(i * 8000) AS ts,
                    'sess-' || (i // {per_session}) AS session_id, i % {per_session} AS seq, i % 100 AS k
             FROM range({start}, {stop}) t(i)),
  f AS (
    SELECT *, CASE WHEN seq = 0 THEN 'open' WHEN seq = {per_session} - 1 THEN 'close' ELSE 'text' END AS kind,
           CASE WHEN seq IN (0, {per_session} - 1) THEN NULL
                WHEN seq = 1 THEN 'phx_join' WHEN seq = 2 THEN 'join_reply'
                WHEN k < 40 AND k % 2 = 0 THEN 'heartbeat' WHEN k < 40 THEN 'phx_reply'
                WHEN k < 50 THEN 'broadcast' ELSE 'postgres_changes' END AS ev
    FROM g
  )
  SELECT * REPLACE (
      CASE WHEN kind = 'text' THEN encode('{{"event":"' || event || '","payload":' || payload || ',"ref":'
           || coalesce('"' || ref || '"', 'null') || ',"topic":"' || topic || '"}}') END AS raw,
      CASE WHEN kind = 'text' THEN 40 + length(payload) ELSE 0 END AS payload_bytes)
  FROM (
  SELECT ts, session_id, seq::BIGINT AS seq,
    CASE WHEN seq = 0 OR ev IN ('phx_join', 'heartbeat') THEN 'out' ELSE 'in' END AS direction,
    kind, '1.0.0' AS vsn,
    CASE WHEN ev IS NULL THEN NULL WHEN ev IN ('heartbeat', 'phx_reply') THEN 'phoenix' ELSE 'realtime:public:orders' END AS topic,
    CASE WHEN ev = 'join_reply' THEN 'phx_reply' ELSE ev END AS event,
    CASE WHEN ev IN ('phx_join', 'join_reply') THEN '1' END AS ref,
    CASE WHEN ev = 'phx_join' THEN '1' END AS join_ref,
    CASE WHEN seq = 0 THEN '{{"url": "ws://bench/realtime/v1/websocket?apikey=REDACTED"}}'
         WHEN seq = {per_session} - 1 THEN '{{"code": 1006, "reason": "", "by": "network"}}'
         WHEN ev = 'heartbeat' THEN '{{}}'
         WHEN ev = 'phx_reply' THEN '{{"response":{{}},"status":"ok"}}'
         WHEN ev = 'phx_join' THEN '{{"config":{{"postgres_changes":[{{"event":"*","schema":"public","table":"orders"}}]}}}}'
         WHEN ev = 'join_reply' THEN '{{"response":{{"postgres_changes":[{{"event":"*","id":1,"schema":"public","table":"orders"}}]}},"status":"ok"}}'
         WHEN ev = 'broadcast' THEN '{{"event":"new_message","payload":{{"id":' || i || ',"text":"hello"}},"type":"broadcast"}}'
         ELSE '{{"data":{{"columns":[{{"name":"id","type":"int8"}},{{"name":"status","type":"text"}}],"commit_timestamp":"2026-11-24T08:00:00.000Z","errors":null,"record":'
              || CASE WHEN i % 100 = 99 THEN '{{}}' ELSE '{{"id":' || i || ',"status":"paid","total":12.5}}' END
              || ',"schema":"public","table":"orders","type":"INSERT"}},"ids":[1]}}'
    END AS payload,
    0::BIGINT AS payload_bytes,
    NULL::BLOB AS raw,
    CASE WHEN kind = 'close' THEN 1006 END::INTEGER AS close_code,
    NULL::VARCHAR AS decode_error,
    'proxy' AS source
  FROM f)
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 256000)
"""

LOGS_SQL = """
COPY (
  WITH g AS (SELECT i, TIMESTAMPTZ '2026-11-24 00:00:00+00' + to_microseconds(i * 8000) AS ts, i % 100 AS k
             FROM range({start}, {stop}) t(i))
  SELECT * REPLACE (strftime(ts, '%Y-%m-%d %H:%M:%S,%g') || ' - ' || logger || ' - ' || upper(level) || ' - ' || message AS raw)
  FROM (
  SELECT ts,
    CASE WHEN k < 50 THEN 'realtime' WHEN k < 95 THEN 'bot' WHEN k < 97 THEN 'notification' ELSE 'server' END AS source,
    CASE WHEN k < 50 THEN 'realtime.log' WHEN k < 95 THEN 'bot.log' WHEN k < 97 THEN 'notification.log' ELSE 'server.log' END AS file,
    'bench-' || (k // 50) AS file_id, i * 120 AS "offset",
    CASE WHEN k < 48 THEN 'debug' WHEN (k = 49 AND i % 10000 = 49) OR (k >= 97 AND i % 10000 < 100) THEN 'error' ELSE 'info' END AS level,
    CASE WHEN k < 50 THEN 'realtime._async.client' WHEN k < 97 THEN 'bot.main' ELSE 'realtime-server' END AS logger,
    CASE
      WHEN k < 24 THEN 'send: {{"event":"heartbeat","payload":{{}},"topic":"phoenix","ref":null,"join_ref":null}}'
      WHEN k < 48 THEN 'receive: ''{{"event":"phx_reply","payload":{{"response":{{}},"status":"ok"}},"ref":null,"topic":"phoenix"}}'''
      WHEN k = 49 AND i % 10000 = 49 THEN 'WebSocket connection closed with code: 1006, reason: '
      WHEN k < 50 THEN 'channel realtime:public:orders leave'
      WHEN k < 70 THEN 'health check: realtime=connected subscription=SUBSCRIBED db=ok polling=off'
      WHEN k < 82 THEN 'inserted order ' || i || ' into public.orders (customer 1, total 9.99)'
      WHEN k < 95 THEN 'received postgres_changes INSERT for public.orders id=' || (i - 12)
      WHEN k < 97 THEN 'to admins 1, 2: daily summary sent'
      WHEN i % 10000 < 100 THEN 'UnableToBroadcastChanges: :payload_missing'
      ELSE 'Sent 200 in 4ms'
    END AS message,
    CASE WHEN k >= 97 AND i % 10000 < 100 THEN 'UnableToBroadcastChanges' END AS error_code,
    NULL::VARCHAR AS project,
    NULL::VARCHAR AS raw,
    true AS parsed
  FROM g)
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 256000)
"""

# Every value of every column of every file the report may read is read once: the parts of
# frames and logs and the tables the recorder derived from them (STORE/derived). count(col) of a
# column without NULLs is answered from the Parquet statistics without reading it, so each column
# goes through a function of its values (strlen: bytes, cheaper than length's characters). Sums
# over all-NULL columns are NULL: coalesced.
def _value_reader(name: str, kind: pa.DataType) -> str:
    col = f'"{name}"'
    if pa.types.is_timestamp(kind):
        return f"coalesce(max(epoch_us({col})), 0)"
    if pa.types.is_boolean(kind):
        return f"count_if({col})"
    if pa.types.is_integer(kind):
        return f"coalesce(sum({col}), 0)"
    if pa.types.is_binary(kind):
        return f"coalesce(sum(octet_length({col})), 0)"
    return f"coalesce(sum(strlen({col})), 0)"


def bare_scan(store: str) -> str:
    """One query that reads every value of every column of the store's Parquet files."""
    sums = []
    for directory in sorted({os.path.dirname(os.path.dirname(f)) for f in glob.glob(f"{store}/**/*.parquet", recursive=True)}):
        files = f"{directory}/date=*/part-*.parquet"
        schema = pq.read_schema(glob.glob(files)[0])
        reads = " + ".join(_value_reader(field.name, field.type) for field in schema)
        sums.append(f"(SELECT {reads} FROM read_parquet('{files}'))")
    return "SELECT " + " + ".join(sums)


CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    what, store = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    if what == "bare":
        import duckdb
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")  # it would print to stdout after 2 s
        con.execute(sys.argv[3]).fetchall()
        extra = {{}}
    else:
        from analyzer.report import build_report
        r = build_report(store)
        extra = {{"incidents": len(r.incidents), "escalate": r.escalate, "counts": r.counts}}
    seconds = time.perf_counter() - t
    # VmHWM: this process image's own peak. ru_maxrss would start at the (large) benchmark
    # process's, which Linux carries across fork + exec
    try:
        with open("/proc/self/status") as fh:
            rss_kb = int(next(l for l in fh if l.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"s": seconds, "rss_mb": rss_kb / 1024, **extra}}))
    """
)


def make_store(path: str, rows: int) -> None:
    """Write ``rows`` frames and ``rows`` log records as Parquet parts in the store layout."""
    for table in ("frames", "logs"):
        os.makedirs(os.path.join(path, table, "date=2026-11-24"), exist_ok=True)
    with open(os.path.join(path, "store.json"), "w") as fh:
        json.dump({"format": "rt-blackbox-store", "version": 1}, fh)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    step = -(-rows // PARTS)
    for n in range(PARTS):
        start, stop = n * step, min(rows, (n + 1) * step)
        if start >= stop:
            break
        con.execute(FRAMES_SQL.format(start=start, stop=stop, per_session=max(rows // 50, 100),
                                      path=f"{path}/frames/date=2026-11-24/part-bench-{n:04d}.parquet"))
        con.execute(LOGS_SQL.format(start=start, stop=stop, path=f"{path}/logs/date=2026-11-24/part-bench-{n:04d}.parquet"))
    con.close()


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(rows: int = ROWS, rounds: int = 2) -> dict:
    tmp = tempfile.mkdtemp(prefix="rtbb-report-")
    try:
        store = os.path.join(tmp, "store")
        t = time.perf_counter()
        make_store(store, rows)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        backfill_derived(store)  # the recorder's own code, as its writer thread runs it after each commit
        derive_s = time.perf_counter() - t
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) for f in fs)
        bare, ours = [], []
        for _ in range(rounds):  # alternate, keep the best of each (shared, noisy machine)
            bare.append(_child("bare", store, bare_scan(store)))
            ours.append(_child("report", store))
        b = min(bare, key=lambda r: r["s"])
        o = min(ours, key=lambda r: r["s"])
        return {
            "rows": rows, "mb": size / 1e6, "gen_s": gen_s, "derive_s": derive_s,
            "bare_s": b["s"], "bare_rss_mb": max(r["rss_mb"] for r in bare),
            "report_s": o["s"], "report_rss_mb": max(r["rss_mb"] for r in ours),
            "ratio": o["s"] / b["s"], "incidents": o["incidents"], "escalate": o["escalate"],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> list[str]:
    return [
        f"report over {r['rows']:,} frames + {r['rows']:,} log records ({r['mb']:.0f} MB Parquet, generated in {r['gen_s']:.1f} s,",
        f"  derived tables written in {r['derive_s']:.1f} s, as the recorder writes them after each commit):",
        f"  bare DuckDB scan, every value    : {r['bare_s']:.2f} s  (peak RSS {r['bare_rss_mb']:.0f} MB)",
        f"  rt-analyze report                : {r['report_s']:.2f} s  (peak RSS {r['report_rss_mb']:.0f} MB, "
        f"{r['incidents']} incidents, escalate={r['escalate']})",
        f"  ratio                            : {r['ratio']:.2f}x the bare scan (target <= 3x)",
    ]


if __name__ == "__main__":
    print("\n".join(report(run())))
