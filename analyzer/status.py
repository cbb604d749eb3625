"""The bot's ``/status`` and ``/stats`` computed from a store (``rt-analyze status`` / ``stats``).

:func:`build_status` says whether the client is connected and since when, each channel's
state, the last heartbeat and its round trip, and whether the bot fell back to polling.
:func:`build_stats` counts frames by topic and event, changes per table, the payload error
rate, reconnects, and the p50/p99 of join latency and heartbeat round trip. Both return plain
JSON-able dicts; the renderers below print them as text. SQL: ``analyzer/sql/status_*.sql``,
``stats_*.sql``.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.db import connect, named_sql
from analyzer.model import iso
from analyzer.report import pin_window
from analyzer.thresholds import Thresholds


def _rows(con, name: str) -> list[dict]:
    cur = con.execute(named_sql(name))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def build_status(store: str | Path, since=None, until=None) -> dict:
    """The bot's /status as of the end of the recording (or ``until``)."""
    con = connect(store)
    try:
        pin_window(con, since, until, Thresholds())
        conn = _rows(con, "status_connection")
        channels = _rows(con, "status_channels")
        hb = _rows(con, "status_heartbeat")
        polling = _rows(con, "status_polling")
        last = con.execute("SELECT max(ts) FROM timeline").fetchone()[0]
    finally:
        con.close()
    connection = None
    if conn:
        c = conn[0]
        up = c["state"] == "up" and (c["end"] is None or str(c["end_text"]).startswith("still open"))
        connection = {
            "connected": up,
            "since": iso(c["start"] if up or c["state"] == "down" else c["end"]),
            "from": c["origin"],
            "evidence": c["start_text"] if up or c["state"] == "down" else c["end_text"],
        }
    heartbeat = None
    if hb:
        h = hb[0]
        heartbeat = {"sent": iso(h["ts"]), "replied": iso(h["reply_ts"]),
                     "rtt_ms": None if h["rtt_ms"] is None else round(h["rtt_ms"], 3)}
    fallback = None
    if polling:
        fallback = {"polling": polling[0]["polling"], "since": iso(polling[0]["ts"]), "evidence": polling[0]["line"]}
    return {
        "as_of": iso(last),
        "connection": connection,
        "channels": [{"topic": r["topic"], "state": r["state"], "since": iso(r["since"]), "from": r["origin"]} for r in channels],
        "last_heartbeat": heartbeat,
        "fallback": fallback,
    }


def build_stats(store: str | Path, since=None, until=None) -> dict:
    """The bot's /stats over the window."""
    con = connect(store)
    try:
        pin_window(con, since, until, Thresholds())
        frames = _rows(con, "stats_frames")
        changes = _rows(con, "stats_changes")
        latency = {r["metric"]: r for r in _rows(con, "stats_latency")}
        sessions = con.execute("SELECT count(DISTINCT session_id) FILTER (WHERE kind = 'open') FROM frames").fetchone()[0]
        log_connects = con.execute("SELECT count(*) FROM log_signals WHERE signal = 'connecting'").fetchone()[0]
        log_reconnects = con.execute("SELECT count(*) FROM log_signals WHERE signal = 'reconnecting'").fetchone()[0]
    finally:
        con.close()
    total = sum(r["changes"] for r in changes)
    invalid = sum(r["invalid"] for r in changes)

    def pct(metric: str) -> dict:
        r = latency.get(metric) or {}
        return {"n": r.get("n", 0), "p50": _round(r.get("p50")), "p99": _round(r.get("p99"))}

    return {
        "frames": [{k: r[k] for k in ("topic", "event", "direction", "frames")} for r in frames],
        "changes": changes,
        "payload_error_rate": {"invalid": invalid, "total": total, "rate": round(invalid / total, 6) if total else None},
        "reconnects": {"from_frames": max(sessions - 1, 0), "from_logs": max(log_reconnects, log_connects - 1, 0)},
        "join_latency_ms": pct("join_latency_ms"),
        "heartbeat_rtt_ms": pct("heartbeat_rtt_ms"),
    }


def _round(v):
    return None if v is None else round(float(v), 3)


def render_status_text(status: dict) -> str:
    lines = [f"as of {status['as_of'] or '-'}"]
    c = status["connection"]
    if c is None:
        lines.append("connection: unknown (no frames, no connection log lines)")
    else:
        lines.append(f"connection: {'connected' if c['connected'] else 'DISCONNECTED'} since {c['since']} (from {c['from']}: {c['evidence']})")
    if status["channels"]:
        lines.append("channels:")
        for ch in status["channels"]:
            lines.append(f"  {ch['topic']}: {ch['state']} since {ch['since']} (from {ch['from']})")
    else:
        lines.append("channels: none recorded")
    hb = status["last_heartbeat"]
    if hb is None:
        lines.append("last heartbeat: none recorded (heartbeats are only in frames)")
    else:
        rtt = f"round trip {hb['rtt_ms']} ms" if hb["rtt_ms"] is not None else "NO REPLY"
        lines.append(f"last heartbeat: {hb['sent']}, {rtt}")
    fb = status["fallback"]
    if fb is None:
        lines.append("polling fallback: unknown (no polling or health-check lines)")
    else:
        lines.append(f"polling fallback: {'ON' if fb['polling'] else 'off'} since {fb['since']} ({fb['evidence']})")
    return "\n".join(lines) + "\n"


def render_stats_text(stats: dict) -> str:
    lines = ["frames by topic and event:"]
    for r in stats["frames"] or []:
        lines.append(f"  {r['frames']:>9}  {r['direction'] or '-':<3} {r['topic']} {r['event']}")
    if not stats["frames"]:
        lines.append("  none")
    lines.append("postgres_changes per table:")
    for r in stats["changes"] or []:
        lines.append(f"  {r['changes']:>9}  {r['relation']} {r['type']} ({r['invalid']} invalid)")
    if not stats["changes"]:
        lines.append("  none")
    p = stats["payload_error_rate"]
    rate = "-" if p["rate"] is None else f"{p['rate']:.2%}"
    lines.append(f"payload error rate: {rate} ({p['invalid']} of {p['total']})")
    r = stats["reconnects"]
    lines.append(f"reconnects: {r['from_frames']} (frames), {r['from_logs']} (client logs)")
    for key, label in (("join_latency_ms", "join latency"), ("heartbeat_rtt_ms", "heartbeat round trip")):
        m = stats[key]
        if m["n"]:
            lines.append(f"{label}: p50 {m['p50']} ms, p99 {m['p99']} ms ({m['n']} samples)")
        else:
            lines.append(f"{label}: no samples")
    return "\n".join(lines) + "\n"
