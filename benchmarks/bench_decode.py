"""Decode benchmark: recorded frames -> ``frames`` Parquet, against a per-frame ``json.loads`` loop.

Ours is what the recorder does at commit time: ``StoreWriter.flush`` of captured rows
(``frames_capture``), i.e. :func:`recorder.codec.decode_capture` in batches plus the zstd
Parquet part, its fsync and the commit point. The baseline, in the same run, decodes the same
frames one by one with ``json.loads`` (envelope fields, payload written back with
``json.dumps``) and writes the same columns with pyarrow. The WAL appends that precede the
commit are timed too and reported separately (the recorder does them on its own thread).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.codec import CAPTURE_SCHEMA
from recorder.store import FRAMES_SCHEMA, StoreWriter

BATCH = 5_000  # rows per WAL append: about what 50 ms of a busy proxy captures


def captured_frames(n: int) -> list[tuple]:
    """``n`` capture rows of a realistic mix (vsn 1.0.0 and 2.0.0 text frames, both directions)."""
    base_us = 1_795_000_000_000_000
    rows = []
    for i in range(n):
        k = i % 20
        if k < 14:
            raw = (
                '{"event":"postgres_changes","payload":{"data":{"columns":[{"name":"id","type":"int8"},'
                '{"name":"status","type":"text"}],"commit_timestamp":"2026-11-24T08:00:00.000Z","errors":null,'
                f'"record":{{"id":{i},"status":"paid","note":"caf\u00e9"}},"schema":"public","table":"orders",'
                f'"type":"UPDATE"}},"ids":[38606455]}},"ref":null,"topic":"realtime:orders"}}'
            )
            direction = "in"
        elif k < 16:
            raw = f'{{"event":"heartbeat","payload":{{}},"topic":"phoenix","ref":"{i}","join_ref":null}}'
            direction = "out"
        elif k < 18:
            raw = f'{{"event":"phx_reply","payload":{{"response":{{}},"status":"ok"}},"ref":"{i - 2}","topic":"phoenix"}}'
            direction = "in"
        else:
            raw = (
                f'[null,null,"realtime:room{i % 7}","broadcast",{{"event":"cursor","payload":'
                f'{{"x":{i % 1000},"y":{(i * 7) % 1000},"user":"u{i % 50}"}},"type":"broadcast"}}]'
            )
            direction = "in"
        vsn = "2.0.0" if raw.startswith("[") else "1.0.0"
        rows.append((base_us + i, f"s{i % 4}", i // 4, direction, "text", vsn, raw.encode(), None, None, "proxy"))
    return rows


def capture_table(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    arrays = [pa.array(col, type=f.type) if f.name != "ts" else pa.array(col, pa.int64()).cast(f.type)
              for col, f in zip(cols, CAPTURE_SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=CAPTURE_SCHEMA)


def baseline_loop(table: pa.Table, path: str) -> pa.Table:
    """Per-frame ``json.loads``: the envelope by hand, payload back to JSON, same columns and Parquet."""
    raws = table["raw"].to_pylist()
    vsns = table["vsn"].to_pylist()
    topic, event, ref, join_ref, payload, size, error = [], [], [], [], [], [], []
    for raw, vsn in zip(raws, vsns, strict=True):
        try:
            obj = json.loads(raw)
            if vsn == "2.0.0":
                j, r, t, e, p = obj
            else:
                t, e, p, r, j = obj["topic"], obj["event"], obj["payload"], obj["ref"], obj.get("join_ref")
            out = json.dumps(p, ensure_ascii=False, separators=(",", ":"))
            err = None
        except (ValueError, KeyError, TypeError) as exc:
            t = e = r = j = out = None
            err = str(exc)
        topic.append(t)
        event.append(e)
        ref.append(r)
        join_ref.append(j)
        payload.append(out)
        size.append(len(raw))
        error.append(err)
    columns = {
        "topic": pa.array(topic, pa.string()),
        "event": pa.array(event, pa.string()),
        "ref": pa.array(ref, pa.string()),
        "join_ref": pa.array(join_ref, pa.string()),
        "payload": pa.array(payload, pa.string()),
        "payload_bytes": pa.array(size, pa.int64()),
        "decode_error": pa.array(error, pa.string()),
    }
    out = pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else table[f.name].cast(f.type) for f in FRAMES_SCHEMA],
        schema=FRAMES_SCHEMA,
    )
    pq.write_table(out, path, compression="zstd", compression_level=1, row_group_size=256_000)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return out


def ours(table: pa.Table, store: str) -> tuple[float, float, int]:
    """(seconds of WAL appends, seconds of the commit, rows committed)."""
    writer = StoreWriter(store, "bench", flush_rows=10**9, flush_bytes=1 << 40, flush_interval=1e9)
    try:
        started = time.perf_counter()
        for start in range(0, table.num_rows, BATCH):
            writer.append("frames_capture", table.slice(start, BATCH))
        appended = time.perf_counter()
        writer.flush()
        committed = time.perf_counter()
        return appended - started, committed - appended, writer.rows_committed
    finally:
        writer.close()


def run(frames: int = 500_000, rounds: int = 3) -> dict:
    tmp = tempfile.mkdtemp(prefix="rtbb-decode-")
    try:
        table = capture_table(captured_frames(frames))
        best_append = best_commit = best_loop = float("inf")
        for r in range(rounds):  # alternate, keep the best of each (shared, noisy machine)
            store = os.path.join(tmp, f"store{r}")
            append_s, commit_s, committed = ours(table, store)
            assert committed == frames, (committed, frames)
            best_append, best_commit = min(best_append, append_s), min(best_commit, commit_s)
            path = os.path.join(tmp, f"loop{r}.parquet")
            t = time.perf_counter()
            loop_table = baseline_loop(table, path)
            best_loop = min(best_loop, time.perf_counter() - t)
            if r == 0:
                ours_table = pq.read_table(os.path.join(store, "frames")).select(FRAMES_SCHEMA.names)
                ours_table = ours_table.sort_by([("session_id", "ascending"), ("seq", "ascending")])
                loop_sorted = loop_table.sort_by([("session_id", "ascending"), ("seq", "ascending")])
                for name in ("topic", "event", "ref", "join_ref", "payload_bytes", "raw"):
                    assert ours_table[name].equals(loop_sorted[name]), f"{name} differs from the baseline"
                assert ours_table["decode_error"].null_count == frames
                for a, b in zip(ours_table["payload"].to_pylist()[:5000], loop_sorted["payload"].to_pylist()[:5000],
                                strict=True):
                    assert json.loads(a) == json.loads(b)
            shutil.rmtree(store)
            os.remove(path)
        return {
            "frames": frames,
            "mb": sum(len(r) for r in table["raw"].to_pylist()) / 1e6,
            "commit_s": best_commit,
            "append_s": best_append,
            "loop_s": best_loop,
            "commit_fps": frames / best_commit,
            "end_to_end_fps": frames / (best_commit + best_append),
            "loop_fps": frames / best_loop,
            "ratio": best_loop / best_commit,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> list[str]:
    return [
        f"decode, {r['frames']:,} recorded text frames ({r['mb']:.0f} MB, vsn 1.0.0 and 2.0.0) -> frames Parquet:",
        f"  commit (decode_capture + zstd Parquet + commit point): {r['commit_s']:.2f} s  {r['commit_fps']:,.0f} frames/s"
        " (target >= 250k/s)",
        f"  with the WAL appends before it ({r['append_s']:.2f} s)          : {r['end_to_end_fps']:,.0f} frames/s",
        f"  per-frame json.loads loop, same Parquet                 : {r['loop_s']:.2f} s  {r['loop_fps']:,.0f} frames/s",
        f"  ratio: {r['ratio']:.2f}x the json.loads loop",
    ]


if __name__ == "__main__":
    print("\n".join(report(run())))
