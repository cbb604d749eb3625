"""Validation benchmark: ``rt-replay validate`` with the fast engine (jsonschema-rs) against the
reference engine (jsonschema), end to end (read the store, parse, validate, write verdicts), same run.

The store holds 100k recorded postgres_changes frames (INSERT/UPDATE/DELETE of a realistic
12-column ``public.orders`` row, Postgres spacing as the server sends it; 1 % invalid in the
ways realtime-protocol.md lists), written through ``recorder.store.StoreWriter``. Each engine
runs ``validate_store`` once per round (best of ``rounds``); the breakdown shows where the time
goes, and a micro-measure splits parsing from the schema engine per payload. Both engines are
measured in one process (the like-for-like ratio) and both with ``--workers 2`` (forked
processes on the machine's 2 cores); the output says which side used what.

    python -m benchmarks validate
    RT_BENCH_VALIDATE_ROWS=20000 python -m benchmarks validate
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from analyzer.validate import MAX_DEPTH, load_schemas, validate_store
from recorder.store import FRAMES_SCHEMA, StoreWriter

ROWS = int(os.environ.get("RT_BENCH_VALIDATE_ROWS", "100000"))
WORKERS = 2  # the machine's cores: both engines are also measured with --workers 2
SESSIONS = 10


def _record(i: int) -> dict:
    return {
        "id": i,
        "status": ("new", "paid", "shipped")[i % 3],
        "total": round(10 + (i % 997) * 0.37, 2),
        "currency": "EUR",
        "customer_id": f"c0a8{i:012x}-7d1e-4b8f-9a2c-{i % 65536:012x}",
        "note": None if i % 5 else f"deliver after {i % 24}:00, ring twice",
        "items": i % 7 + 1,
        "paid": bool(i % 2),
        "tags": ["web", "promo"] if i % 4 == 0 else [],
        "address": {"city": "Berlin", "zip": f"{10000 + i % 9000}", "street": "Torstraße 1"},
        "created_at": "2026-11-24T08:00:00+00:00",
        "updated_at": "2026-11-24T08:01:02.345678+00:00",
    }


_COLUMNS = [
    {"name": n, "type": t}
    for n, t in [
        ("id", "int8"), ("status", "text"), ("total", "numeric"), ("currency", "text"), ("customer_id", "uuid"),
        ("note", "text"), ("items", "int4"), ("paid", "bool"), ("tags", "_text"), ("address", "jsonb"),
        ("created_at", "timestamptz"), ("updated_at", "timestamptz"),
    ]
]  # fmt: skip


def _pg(obj: object) -> str:
    """JSON with Postgres jsonb spacing (``": "``, ``", "``), as the server passes records through."""
    return orjson.dumps(obj).decode().replace('":', '": ').replace(',"', ', "')


def _payload(i: int) -> str:
    typ = ("INSERT", "UPDATE", "DELETE")[i % 10 % 3] if i % 10 < 3 else "INSERT"
    rec = _record(i)
    data = {
        "columns": _COLUMNS,
        "commit_timestamp": f"2026-11-24T08:00:00.{i % 1000:03d}Z",
        "errors": None,
        "schema": "public",
        "table": "orders",
        "type": typ,
    }
    if typ != "DELETE":
        data["record"] = rec
    if typ != "INSERT":
        data["old_record"] = {"id": i}
    bad = i % 100 == 99
    if bad:  # 1 % invalid, the ways realtime-protocol.md lists
        which = (i // 100) % 5
        if which == 0:
            data["record"] = {}
            data.pop("old_record", None)
            data["type"] = "UPDATE"
            data["old_record"] = {"id": i}
        elif which == 1:
            data.update(commit_timestamp=None, errors=["Error 401: Unauthorized"], columns=[], record={})
            data["type"] = "INSERT"
            data.pop("old_record", None)
        elif which == 2:
            data["commit_timestamp"] = None
        elif which == 3:
            data["type"] = "TRUNCATE"
        else:
            data["record"] = None
            data["type"] = "INSERT"
            data.pop("old_record", None)
    body = (
        '{"columns":' + _pg(data["columns"]) + "," + orjson.dumps({k: v for k, v in data.items()
                                                                    if k not in ("columns", "record", "old_record")}).decode()[1:-1]
    )
    for key in ("old_record", "record"):
        if key in data:
            body += f',"{key}":' + (_pg(data[key]) if data[key] is not None else "null")
    return '{"data":' + body + '},"ids":[38606455]}'


def build_store(path: str, rows: int = ROWS) -> int:
    """A store with ``rows`` postgres_changes frames in ``SESSIONS`` sessions; returns the payload bytes."""
    start = datetime(2026, 11, 24, 8, tzinfo=UTC)
    per = rows // SESSIONS
    total = 0
    with StoreWriter(path, writer="bench") as w:
        for s in range(SESSIONS):
            payloads = [_payload(s * per + k) for k in range(per)]
            total += sum(len(p) for p in payloads)
            cols = {
                "ts": [start + timedelta(milliseconds=(s * per + k) * 5) for k in range(per)],
                "session_id": [f"bench-{s:02d}"] * per,
                "seq": list(range(per)),
                "direction": ["in"] * per,
                "kind": ["text"] * per,
                "vsn": ["1.0.0"] * per,
                "topic": ["realtime:orders"] * per,
                "event": ["postgres_changes"] * per,
                "ref": [None] * per,
                "join_ref": [None] * per,
                "payload": payloads,
                "payload_bytes": [len(p) + 60 for p in payloads],
                "raw": [None] * per,
                "close_code": [None] * per,
                "decode_error": [None] * per,
                "source": ["proxy"] * per,
            }
            w.append("frames", pa.table(cols, schema=FRAMES_SCHEMA))
    return total


def _micro(store: str, sample: int = 20_000) -> dict:
    """Per INSERT payload, on fresh objects as the pipeline has them (16 parsed, checked, dropped):
    orjson alone, orjson + jsonschema-rs, and jsonschema on parsed payloads."""
    import duckdb

    from analyzer.validate import ENGINES, _ColumnSharing, _deep, _shallow_loads

    texts = [r[0] for r in duckdb.sql(
        f"SELECT payload FROM read_parquet('{store}/frames/*/*.parquet') "
        f"WHERE payload LIKE '%\"type\":\"INSERT\"%' AND payload NOT LIKE '%errors\":[%' LIMIT {sample}"
    ).fetchall()]  # fmt: skip
    blobs = [t.encode() for t in texts]
    schema = load_schemas().events["postgres_changes.INSERT"].schema
    fast, ref = ENGINES["fast"].compile(schema), ENGINES["reference"].compile(schema)

    def per_payload(fn, items) -> float:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for s in range(0, len(items), 16):
                fn(items[s : s + 16])
            best = min(best, time.perf_counter() - t)
        return best / len(items) * 1e6

    parse_us = per_payload(lambda part: [orjson.loads(b) for b in part], blobs)
    sharing = _ColumnSharing()
    shared_us = per_payload(lambda part: [sharing.loads(b) for b in part], blobs)
    shallow_us = per_payload(lambda part: [_shallow_loads(b) for b in part], blobs) - parse_us
    fast_us = per_payload(lambda part: fast([orjson.loads(b) for b in part]), blobs)
    routed = load_schemas().all_valid([ENGINES["fast"]])["postgres_changes"]
    routed_us = per_payload(lambda part: routed([orjson.loads(b) for b in part]), blobs)
    depth_us = per_payload(_deep, blobs)
    parsed = [orjson.loads(b) for b in blobs[:2000]]
    t = time.perf_counter()
    ref(parsed)
    ref_us = (time.perf_counter() - t) / len(parsed) * 1e6
    return {"parse_us": parse_us, "fast_check_us": fast_us - parse_us, "reference_check_us": ref_us,
            "routed_check_us": routed_us - parse_us, "depth_us": depth_us, "shared_us": shared_us,
            "shallow_us": shallow_us,
            "bytes": sum(len(b) for b in blobs) / len(blobs)}  # fmt: skip


def orders_schema_dir(path: str) -> str:
    """A --schema directory with the record schema of the benchmark's public.orders table."""
    from analyzer.validate import parse_columns, record_schema, write_record_schema

    spec = ",".join(f"{c['name']}:{c['type']}" + (":not null" if c["name"] in ("id", "status") else "") for c in _COLUMNS)
    write_record_schema("public.orders", record_schema("public.orders", parse_columns(spec)), path)
    return path


def _best(store: str, engine: str, schema_dir: str | None, rounds: int, workers: int = 1) -> tuple[dict, object]:
    best, result = None, None
    for _ in range(rounds):
        r = validate_store(store, schema_dir, engine=engine, workers=workers)
        if best is None or r.timings["total"] < best["total"]:
            best, result = dict(r.timings), r
    return best, result


def run(rows: int = ROWS, rounds: int = 3) -> dict:
    tmp = tempfile.mkdtemp(prefix="rtbb-validate-")
    try:
        store = os.path.join(tmp, "store")
        t = time.perf_counter()
        nbytes = build_store(store, rows)
        build_s = time.perf_counter() - t
        schemas = orders_schema_dir(os.path.join(tmp, "schemas"))
        validate_store(store, engine="fast", write=False)  # warm: first dataset scan of the process
        out = {"rows": rows, "mb": nbytes / 1e6, "build_s": build_s}
        for label, schema_dir in (("builtin", None), ("table", schemas)):
            # the reference takes 20-40 s a run: once; the fast engine: best of `rounds`
            fast_t, fast = _best(store, "fast", schema_dir, rounds)
            par_t, par = _best(store, "fast", schema_dir, rounds, workers=WORKERS)
            ref_t, ref = _best(store, "reference", schema_dir, 1)
            ref_par_t, ref_par = _best(store, "reference", schema_dir, 1, workers=WORKERS)
            assert (fast.checked, fast.invalid) == (ref.checked, ref.invalid), "engines disagree on counts"
            assert par.counts == fast.counts == ref_par.counts, "workers changed the counts"
            out[label] = {"fast": fast_t, "parallel": par_t, "reference": ref_t, "reference_parallel": ref_par_t,
                          "ratio": ref_t["total"] / fast_t["total"],
                          "ratio_parallel": ref_par_t["total"] / par_t["total"],
                          "ratio_parallel_vs_one": ref_t["total"] / par_t["total"],
                          "checked": fast.checked, "invalid": fast.invalid}  # fmt: skip
        out["disagreements"] = validate_store(store, schemas, engine="both", write=False).disagreements
        out["micro"] = _micro(store)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _breakdown(t: dict, n: int, summed: bool = False) -> str:
    """Per payload: read (store to bytes), parse (+ depth scan), validate (+ explain, tally), write, setup.

    ``summed``: the stages ran side by side in several processes, so they add up to more than the total.
    """
    stages = ("read", "parse", "validate", "write")
    text = ", ".join(f"{k} {t[k] / n * 1e6:.2f}" for k in stages)
    if summed:
        return text + " us"
    return text + f", setup+other {(t['total'] - sum(t[k] for k in stages)) / n * 1e6:.2f} us"


def report(r: dict) -> list[str]:
    m, n = r["micro"], r["rows"]
    b = r["builtin"]
    out = [
        f"payload validation, {n:,} postgres_changes frames ({r['mb']:.0f} MB of payload, {b['invalid']:,} invalid), "
        "end to end (read the store, parse, validate, write verdicts), same run; per payload in us:",
    ]
    for label, title in (("builtin", "built-in schemas"), ("table", "+ public.orders record schema")):
        x = r[label]
        f, p, ref, rp = x["fast"], x["parallel"], x["reference"], x["reference_parallel"]
        out += [
            f"  {title}:",
            f"    fast (jsonschema-rs), 1 process       : {f['total']:.2f} s  {n / f['total']:,.0f} payloads/s  [{_breakdown(f, n)}]",
            f"    reference (jsonschema), 1 process    : {ref['total']:.2f} s  {n / ref['total']:,.0f} payloads/s  [{_breakdown(ref, n)}]",
            f"    ratio, both in 1 process             : {x['ratio']:.1f}x (target >= 50x)",
            f"    fast, --workers {WORKERS} (forked)            : {p['total']:.2f} s  {n / p['total']:,.0f} payloads/s  "
            f"[stage times summed over the processes: {_breakdown(p, n, summed=True)}]",
            f"    reference, --workers {WORKERS} (forked)       : {rp['total']:.2f} s  {n / rp['total']:,.0f} payloads/s",
            f"    ratio, both with --workers {WORKERS}          : {x['ratio_parallel']:.1f}x",
            f"    (fast --workers {WORKERS} against the reference in 1 process, {WORKERS} cores against 1: "
            f"{x['ratio_parallel_vs_one']:.1f}x)",
        ]
    floor = m["parse_us"] + m["fast_check_us"]
    out += [
        f"  --engine both: {r['disagreements']} disagreements",
        f"  per INSERT payload ({m['bytes']:.0f} bytes): orjson parse {m['parse_us']:.2f} us (with the columns "
        f"list shared: {m['shared_us']:.2f} us) + jsonschema-rs "
        f"{m['fast_check_us']:.2f} us; jsonschema {m['reference_check_us']:.0f} us "
        f"(engine alone {m['reference_check_us'] / m['fast_check_us']:.0f}x; with the parse "
        f"{m['reference_check_us'] / floor:.0f}x is the ceiling end to end in one process)",
        f"  the pipeline's own steps per payload: bracket count before parsing {m['shallow_us']:.2f} us (the exact "
        f"depth scan, only where the count is over {MAX_DEPTH}: {m['depth_us']:.2f} us), one-call check of a chunk "
        f"against the routed postgres_changes schema {m['routed_check_us']:.2f} us",
    ]
    return out


if __name__ == "__main__":
    print("\n".join(report(run())))
