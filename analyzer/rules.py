"""The rule registry: one small function per cause of design.md, each returning its incidents.

``RULES`` maps a cause to ``rule(ctx) -> list[Incident]``; :func:`run_rules` calls them in
registry order on one :class:`Context` (a DuckDB connection whose views are pinned to the
report window, see :mod:`analyzer.report`). Rules read the views through named SQL
(``analyzer/sql/rule_*.sql``); what several rules share (subscription attempts, down
intervals) is computed once by the context. A rule marks the rows it explains as *claimed*,
so a later rule does not explain them again (a write lost to ``payload_missing`` is not also
an ``rls`` missed event) and the report can list what no rule explained.

Adding a cause: write one function, decorate it with ``@rule("cause")``, add a scenario test.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import duckdb

from analyzer.db import named_sql
from analyzer.model import Evidence, Incident, evidence_from_row, evidence_key
from analyzer.thresholds import Thresholds

Row = dict
RuleFunction = Callable[["Context"], list[Incident]]
RULES: dict[str, RuleFunction] = {}

SERVER_SOURCES = ("server", "supabase", "realtime-server")
NORMAL_CLOSES = (1000, 1001, 1005)


def rule(cause: str) -> Callable[[RuleFunction], RuleFunction]:
    def register(fn: RuleFunction) -> RuleFunction:
        RULES[cause] = fn
        return fn

    return register


# ---- context ----------------------------------------------------------------------------------


@dataclass
class Context:
    """What a rule works with: the pinned connection, the thresholds and shared findings.

    Named queries without parameters are run once per context (several rules read the same
    channel or lifecycle frames); each call gets its own copies of the rows, so a rule may
    change them. Nothing outlives the context: a new report gets a new one.
    """

    con: duckdb.DuckDBPyConnection
    thresholds: Thresholds
    expected_writes: list[Row] = field(default_factory=list)
    claimed: set = field(default_factory=set)
    _memo: dict = field(default_factory=dict, repr=False)
    _attempt_index: tuple[list, int, dict] | None = field(default=None, repr=False)

    @property
    def tolerance(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.thresholds.analysis.match_tolerance_s)

    @property
    def gap(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.thresholds.analysis.burst_gap_s)

    def query(self, name: str, params: dict | None = None) -> list[Row]:
        """Rows of ``analyzer/sql/<name>.sql`` as dicts (run once per context when without parameters)."""
        if params:
            return self._run(name, params)
        rows = self._memo.get(name)
        if rows is None:
            rows = self._memo[name] = self._run(name, {})
        return [dict(r) for r in rows]

    def _run(self, name: str, params: dict) -> list[Row]:
        cur = self.con.execute(named_sql(name), params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str):
        """The one value of ``sql``, computed once per context."""
        key = ("scalar", sql)
        if key not in self._memo:
            self._memo[key] = self.con.execute(sql).fetchone()[0]
        return self._memo[key]

    def signals(self, *names: str) -> list[Row]:
        return self.query("rule_signals", {"signals": list(names)})

    def claim(self, rows: Iterable[Row | Evidence]) -> None:
        for r in rows:
            self.claimed.add(r.key if isinstance(r, Evidence) else evidence_key(r))

    def is_claimed(self, row: Row) -> bool:
        return evidence_key(row) in self.claimed

    @cached_property
    def bad_changes(self) -> list[Row]:
        return self.query("rule_bad_changes")

    @cached_property
    def attempts(self) -> list[Attempt]:
        return subscription_attempts(self)

    @cached_property
    def down_intervals(self) -> list[Row]:
        rows = self.con.execute(
            "SELECT origin, start, \"end\", start_text, end_text, session_id FROM connections "
            "WHERE state = 'down' ORDER BY start"
        ).fetchall()
        return [dict(zip(("origin", "start", "end", "start_text", "end_text", "session_id"), r, strict=True)) for r in rows]

    @cached_property
    def _down_index(self) -> tuple[list, list]:
        """Down intervals merged into disjoint (start, end) pairs, sorted, for bisect."""
        merged: list[list] = []
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        for d in sorted(self.down_intervals, key=lambda d: d["start"]):
            end = d["end"] or far
            if merged and d["start"] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([d["start"], end])
        return [m[0] for m in merged], [m[1] for m in merged]

    def connected_at(self, ts: dt.datetime) -> bool:
        starts, ends = self._down_index
        i = bisect.bisect_right(starts, ts) - 1
        return not (i >= 0 and ts < ends[i])


def bursts(rows: list[Row], gap: dt.timedelta, key: Callable[[Row], object] | None = None) -> list[list[Row]]:
    """Group rows (sorted by ts) into runs whose neighbours are at most ``gap`` apart (per ``key``)."""
    groups: dict[object, list[list[Row]]] = {}
    for r in sorted(rows, key=lambda r: r["ts"]):
        k = key(r) if key else None
        runs = groups.setdefault(k, [])
        if runs and r["ts"] - runs[-1][-1]["ts"] <= gap:
            runs[-1].append(r)
        else:
            runs.append([r])
    out = [run for runs in groups.values() for run in runs]
    out.sort(key=lambda run: run[0]["ts"])
    return out


def incident(cause: str, detail: str, rows: list[Row], summary: str, *, count: int | None = None,
             topics: Iterable[str | None] = (), extra: Iterable[Row] = ()) -> Incident:
    """An incident spanning ``rows`` (its count unless given) with ``extra`` rows as more evidence."""
    times = [r["ts"] for r in rows if r.get("ts") is not None]
    return Incident(
        cause=cause,
        detail=detail,
        start=min(times) if times else None,
        end=max(times) if times else None,
        count=len(rows) if count is None else count,
        summary=summary,
        topics=sorted({t for t in topics if t}),
        rows=[*rows, *extra],
    )


def near(rows: list[Row], start: dt.datetime, end: dt.datetime, tol: dt.timedelta) -> list[Row]:
    """Rows (sorted by ts) from ``start - tol`` to ``end + tol``."""
    lo = bisect.bisect_left(rows, start - tol, key=lambda r: r["ts"])
    hi = bisect.bisect_right(rows, end + tol, key=lambda r: r["ts"])
    return rows[lo:hi]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _hm(ts: dt.datetime | None) -> str:
    return ts.astimezone(dt.UTC).strftime("%H:%M:%S") if ts else "?"


# ---- payload_missing --------------------------------------------------------------------------

_AFFECTED_JSON_NULL = ((2, 40, 11), (2, 61, 0))  # v2.40.11 <= v < v2.61.0 (realtime-protocol.md §5.2)
_SQL_NULL = re.compile(r"^(NULL|None|\(null\))\s*$")
_JSON_NULL = re.compile(r"^('null'(::jsonb)?|null|\"null\")\s*$")


def _version(text: str | None) -> tuple | None:
    if not text:
        return None
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else None


def _pair(errors: list[Row], candidates: list[Row], tol: dt.timedelta) -> list[tuple[Row, Row]]:
    """Pair each error with the latest unpaired candidate at most ``tol`` before (or after) it."""
    pairs, used = [], set()
    for err in errors:
        i = bisect.bisect_right(candidates, err["ts"] + tol, key=lambda c: c["ts"]) - 1
        while i >= 0 and candidates[i]["ts"] >= err["ts"] - tol:
            if i not in used:
                used.add(i)
                pairs.append((err, candidates[i]))
                break
            i -= 1
    return pairs


@rule("payload_missing")
def payload_missing(ctx: Context) -> list[Incident]:
    """``UnableToBroadcastChanges`` bursts; ``detail`` decided from the evidence around each."""
    lines = ctx.query("rule_broadcast_errors")
    if not lines:
        return []
    ctx.claim(lines)
    errors = [r for r in lines if not r["dup"]]
    sent = ctx.signals("broadcast_sent")
    relations = ctx.signals("unexpected_relation", "publication_unexpected")
    missed_lines = ctx.signals("missed_reported")
    versions = [v["reason"] for v in ctx.signals("server_version") if v["reason"]]
    version_text = ctx.thresholds.analysis.server_version or (versions[-1] if versions else None)
    version = _version(version_text)
    tol = ctx.tolerance
    runs = bursts(errors, ctx.gap, key=lambda r: r["atom"])
    # what the runs of :payload_missing need from the database, asked once for all of them
    missing_runs = [run for run in runs if (run[0]["atom"] or "unknown") == "payload_missing"]
    pairs_of = dict(zip(map(id, missing_runs), _error_writes(ctx, missing_runs), strict=True))
    arrived = _arrived(ctx, (s for run in missing_runs for s in near(sent, run[0]["ts"], run[-1]["ts"], tol)))
    delivered_of = dict(zip(map(id, missing_runs), _arrival_counts(ctx, [
        (run[0]["ts"] - ctx.gap, run[-1]["ts"] + ctx.gap) if pairs_of[id(run)] else None for run in missing_runs
    ]), strict=True))
    relation_lines = _distinct_lines(relations)
    dup_lines = [r for r in lines if r["dup"]]
    out = []
    for run in runs:
        atom = run[0]["atom"] or "unknown"
        start, end = run[0]["ts"], run[-1]["ts"]
        n = len(run)
        if atom != "payload_missing":
            out.append(incident(
                "payload_missing", atom.lstrip(":").split("{")[0].strip("%") or "unknown", run,
                f"The Realtime server could not broadcast {_plural(n, 'database change')} "
                f"(UnableToBroadcastChanges: :{atom}); see realtime-protocol.md §5.2 for this check.",
            ))
            continue
        window_sent = near(sent, start, end, tol)
        sql_null = [s for s in window_sent if s["payload"] is None or _SQL_NULL.match(s["payload"] or "")]
        json_null = [s for s in window_sent if s["payload"] and _JSON_NULL.match(s["payload"])]
        lost_sends = [s for s in window_sent if not arrived[_sent_key(s)]]
        write_pairs = pairs_of[id(run)]
        write_tables = Counter(w["table_name"] for _, w in write_pairs)
        delivered = delivered_of[id(run)]
        affected = version is not None and _AFFECTED_JSON_NULL[0] <= version < _AFFECTED_JSON_NULL[1]
        extra: list[Row] = []
        if json_null and (version is None or affected):
            detail = "json_null_payload"
            extra = json_null
            where = f"server v{version_text} is affected" if affected else "server version unknown; only v2.40.11 to v2.61.0 treat JSON null as missing"
            summary = (
                f"{_plural(n, 'broadcast')} from the database failed with :payload_missing: the application sent "
                f"{_plural(len(json_null), 'message')} whose payload was JSON null ({where}); send an object instead."
            )
        elif sql_null or (lost_sends and len(_pair(run, lost_sends, tol)) == n):
            detail = "null_payload"
            extra = sql_null or lost_sends
            why = (f"the application logged {_plural(len(sql_null), 'realtime.send')} with a NULL payload"
                   if sql_null else f"{_plural(len(lost_sends), 'broadcast')} the application sent never arrived")
            summary = (
                f"{_plural(n, 'broadcast')} from the database failed with :payload_missing because {why}; "
                "make sure realtime.send / realtime.messages rows get a non-null payload."
            )
        elif relation_lines or (write_pairs and len(write_pairs) == n):
            detail = "foreign_table_in_publication"
            extra = [w for _, w in write_pairs] + relation_lines
            tables = sorted(set(write_tables) | {_relation_of(r) for r in relation_lines if _relation_of(r)})
            because = []
            if write_pairs and len(write_pairs) == n:
                because.append(
                    f"each error follows a write the bot logged to {', '.join(sorted(write_tables))}"
                    + (f" while {_plural(delivered, 'broadcast')} kept arriving" if delivered else "")
                )
            if relation_lines:
                because.append(f"the server logged an unexpected relation on the messages publication ({_plural(len(relation_lines), 'line')})")
            summary = (
                f"{_plural(n, 'UnableToBroadcastChanges: :payload_missing error')}: {' and '.join(because)}; "
                f"remove {', '.join(tables) or 'the other table'} from supabase_realtime_messages_publication "
                "(fixed in Realtime v2.66.3)."
            )
        else:
            detail = "unknown"
            summary = (
                f"{_plural(n, 'UnableToBroadcastChanges: :payload_missing error')} with no write, broadcast or "
                "publication line to explain them; check realtime.messages inserts for a NULL payload."
            )
        claimed_writes = [w for _, w in write_pairs] if detail == "foreign_table_in_publication" else []
        ids = {w["record_id"] for w in claimed_writes if w.get("record_id")}
        missed = [m for m in near(missed_lines, start, end + ctx.gap - tol, tol) if _names_id(m, ids)]
        ctx.claim(list(extra) + claimed_writes + missed + (relations if detail == "foreign_table_in_publication" else []))
        ctx.claim(near(dup_lines, start, end, dt.timedelta(0)))
        topics = [s["topic"] for s in extra if s.get("topic")]
        out.append(incident("payload_missing", detail, run, summary, topics=topics, extra=list(extra) + missed))
    return out


def _distinct_lines(rows: list[Row]) -> list[Row]:
    """One row per (millisecond, text): the same server line recorded from several files counts once."""
    seen, out = set(), []
    for r in rows:
        key = (r["ts"].replace(microsecond=r["ts"].microsecond // 1000 * 1000), r["text"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _names_id(row: Row, ids: set) -> bool:
    return any(re.search(rf"\b{re.escape(i)}\b", row["text"] or "") for i in ids)


def _relation_of(row: Row) -> str | None:
    return row.get("table_name")


def _sent_key(sent: Row) -> tuple:
    return evidence_key(sent), sent["ts"], sent.get("topic"), sent.get("reason")


def _arrived(ctx: Context, sent: Iterable[Row]) -> dict[tuple, bool]:
    """For each broadcast the application sent (by :func:`_sent_key`): did one of the same topic
    and event reach the client within tolerance? One query for all of them (rule_arrivals.sql)."""
    unique = list({_sent_key(s): s for s in sent}.values())
    windows = [(s["ts"] - ctx.tolerance, s["ts"] + ctx.tolerance, s.get("topic"), s.get("reason")) for s in unique]
    counts = _arrival_counts(ctx, windows)
    return {_sent_key(s): n > 0 for s, n in zip(unique, counts, strict=True)}


def _arrival_counts(ctx: Context, windows: list[tuple | None]) -> list[int]:
    """Broadcasts that reached the client in each window ``(start, end[, topic, event])`` (0 for None)."""
    wanted = [(i, w) for i, w in enumerate(windows) if w is not None]
    counts = [0] * len(windows)
    if not wanted:
        return counts
    spec = [{"i": i, "start": w[0], "end": w[1], "topic": w[2] if len(w) > 2 else None,
             "event": w[3] if len(w) > 3 else None} for i, w in wanted]
    rows = ctx.query("rule_arrivals", {
        "windows": spec, "lo": min(w["start"] for w in spec), "hi": max(w["end"] for w in spec),
        "with_event": any(w["event"] is not None for w in spec),
        "width_us": max(int((w["end"] - w["start"]).total_seconds() * 1e6) for w in spec) + 1,
    })
    for r in rows:
        counts[r["i"]] = r["n"]
    return counts


def _error_writes(ctx: Context, runs: list[list[Row]]) -> list[list[tuple[Row, Row]]]:
    """Per run of errors, pairs (error, write): each error with the latest write logged just before
    it, each write once per run (rule_error_writes.sql).

    An error may need up to ``per`` candidates (the writes that earlier errors of its run took come
    first), but almost always takes its first: the candidates are fetched :data:`FIRST_CANDIDATES`
    per error, and only a run in which an error used up a cut-down list is fetched again in full.
    The pairs are the same either way, since each list is a prefix of the full one.
    """
    if not runs:
        return []
    tol_us = int(ctx.tolerance.total_seconds() * 1e6)
    per = {k: 2 * len(run) if len(run) < 50 else 50 for k, run in enumerate(runs)}
    cut_per = {k: min(n, FIRST_CANDIDATES) for k, n in per.items()}

    def candidates(ks: list[int], cut: bool) -> dict:
        spec = [{"run": k, "ets": e["ts"], "per": (cut_per if cut else per)[k]} for k in ks for e in runs[k]]
        by_ts: dict = {}
        for r in ctx.query("rule_error_writes", {"errors": spec, "tol_us": tol_us}):
            by_ts.setdefault((r.pop("run"), r["ets"]), []).append(r)
        return by_ts

    def pair(k: int, by_ts: dict, cut: bool) -> list[tuple[Row, Row]] | None:
        pairs, used = [], set()
        for err in runs[k]:
            found = by_ts.get((k, err["ts"]), [])
            for w in found:
                key = evidence_key(w)
                if key not in used:
                    used.add(key)
                    pairs.append((err, w))
                    break
            else:
                if cut and len(found) == cut_per[k] < per[k]:
                    return None  # this error might have had another candidate past the cut
        return pairs

    first = candidates(list(range(len(runs))), cut=True)
    out = [pair(k, first, cut=True) for k in range(len(runs))]
    again = [k for k, pairs in enumerate(out) if pairs is None]
    if again:
        full = candidates(again, cut=False)
        for k in again:
            out[k] = pair(k, full, cut=False)
    return out


FIRST_CANDIDATES = 3  # writes fetched per error at first (see _error_writes)


# ---- payload_too_large / invalid_payload ------------------------------------------------------


@rule("payload_too_large")
def payload_too_large(ctx: Context) -> list[Incident]:
    """postgres_changes with error 413: the server cut the record down to its small columns."""
    rows = [r for r in ctx.bad_changes if r["kind"] == "too_large"]
    out = []
    for run in bursts(rows, ctx.gap, key=lambda r: r["relation"]):
        ctx.claim(run)
        rel = run[0]["relation"] or "?"
        out.append(incident(
            "payload_too_large", "record_truncated", run,
            f"{_plural(len(run), 'change')} of {rel} arrived with \"Error 413: Payload Too Large\": the record "
            "keeps only columns of 64 bytes or less; read big columns from the table, or raise poll_max_record_bytes.",
            topics=[r["topic"] for r in run],
        ))
    return out


_INVALID_DETAIL = {
    "null_record": "null_record",
    "empty_record": "empty_record",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "server_error": "server_error",
    "undecodable": "undecodable",  # from a verdict's error_kind (view changes)
    "too_deep": "too_deep",
}


def _unrecognized(ctx: Context) -> list[Row]:
    rows = ctx.query("rule_unrecognized")
    for r in rows:
        problem = r["problem"]
        if problem and ("401" in problem or "Unauthorized" in problem):
            r["kind"] = "unauthorized"
        elif problem is None:
            r["kind"] = "client_rejected"
        elif problem.startswith("frame:"):
            r["kind"] = "undecodable"
        elif "record: empty" in problem:
            r["kind"] = "empty_record"
        elif "null" in problem:
            r["kind"] = "null_record"
        elif problem.startswith("errors:"):
            r["kind"] = "server_error"
        else:
            r["kind"] = "missing_field" if "missing" in problem else "wrong_type"
    return rows


def _where(row: Row, kind: str) -> str:
    """Where invalid frames were seen: their topic, or why they have none."""
    if row.get("topic"):
        return f"on {row['topic']}"
    if kind == "undecodable":
        return "that could not be decoded (so no topic is known)"
    return "without a topic"


@rule("invalid_payload")
def invalid_payload(ctx: Context) -> list[Incident]:
    """Frames that fail the payload check, and frames the official client could not parse."""
    frames = [r for r in ctx.bad_changes if r["kind"] in _INVALID_DETAIL]
    for r in frames:
        r["kind"] = _INVALID_DETAIL[r["kind"]]
    others = ctx.query("rule_other_bad_frames")
    for r in others:
        r["kind"] = "undecodable" if r["problem"].startswith("frame:") else "null_payload"
    logs = [r for r in _unrecognized(ctx) if r["kind"] != "unauthorized"]
    bot_empty = ctx.signals("empty_record")
    rows = frames + others
    out = []
    used_logs: set = set()
    for run in bursts(rows, ctx.gap, key=lambda r: (r["kind"], r["topic"])):
        start, end = run[0]["ts"], run[-1]["ts"]
        kind = run[0]["kind"]
        extra = [r for r in logs if r["kind"] == kind and start - ctx.tolerance <= r["ts"] <= end + ctx.tolerance]
        if kind == "empty_record":
            extra += [b for b in bot_empty if start - ctx.tolerance <= b["ts"] <= end + ctx.tolerance]
        used_logs.update(evidence_key(r) for r in extra)
        ctx.claim(run + extra)
        problems = Counter(r["problem"] for r in run)
        top = ", ".join(f"{p} ({c})" for p, c in problems.most_common(3))
        out.append(incident(
            "invalid_payload", kind, run,
            f"{_plural(len(run), 'frame')} {_where(run[0], kind)} failed the payload check: {top}"
            + (f"; the client logged {_plural(len(extra), 'line')} about them" if extra else "")
            + ".",
            topics=[r["topic"] for r in run], extra=extra,
        ))
    rest = [r for r in logs if evidence_key(r) not in used_logs]
    for run in bursts(rest, ctx.gap, key=lambda r: (r["kind"], r["topic"])):
        ctx.claim(run)
        kind = run[0]["kind"]
        extra = near(bot_empty, run[0]["ts"], run[-1]["ts"], ctx.tolerance)
        ctx.claim(extra)
        what = ("a frame the server may send (valid by our check)" if kind == "client_rejected"
                else f"an invalid frame ({run[0]['problem']})")
        out.append(incident(
            "invalid_payload", kind, run,
            f"The official client could not parse {_plural(len(run), 'frame')} {_where(run[0], '')} and dropped "
            f"{'it' if len(run) == 1 else 'them'}: {what}; callbacks never ran.",
            topics=[r["topic"] for r in run], extra=extra,
        ))
    leftover_empty = [b for b in bot_empty if not ctx.is_claimed(b)]
    for run in bursts(leftover_empty, ctx.gap, key=lambda r: r["table_name"]):
        ctx.claim(run)
        out.append(incident(
            "invalid_payload", "empty_record", run,
            f"The bot received {_plural(len(run), 'change')} of {run[0]['table_name'] or '?'} with an empty record.",
        ))
    return out


# ---- rls --------------------------------------------------------------------------------------


@rule("rls")
def rls(ctx: Context) -> list[Incident]:
    """401 in change errors, Unauthorized join replies, and writes that never arrived as changes."""
    out = []
    bad = [r for r in ctx.bad_changes if r["kind"] == "unauthorized"]
    logs = [r for r in _unrecognized(ctx) if r["kind"] == "unauthorized"]
    rows = bad or logs
    for run in bursts(rows, ctx.gap, key=lambda r: r["topic"]):
        extra = near(logs, run[0]["ts"], run[-1]["ts"], ctx.tolerance) if bad else []
        ctx.claim(run + extra)
        dropped = " (the official client cannot parse these and drops them)" if logs else ""
        out.append(incident(
            "rls", "column_privilege", run,
            f"{_plural(len(run), 'change')} on {run[0]['topic'] or '?'} arrived as \"Error 401: Unauthorized\" with an empty "
            f"record{dropped}: the subscriber's role lacks SELECT on a primary-key column; GRANT SELECT to it.",
            topics=[r["topic"] for r in run], extra=extra,
        ))
    refused = [a for a in ctx.attempts if a.cause == "rls"]
    for run in _attempt_bursts(refused, ctx.gap):
        rows = [r for a in run for r in a.rows]
        ctx.claim(rows)
        out.append(incident(
            "rls", "channel_unauthorized", [a.rows[0] for a in run],
            f"{_plural(len(run), 'subscription')} to {run[0].topic} refused: {run[0].reason}; check the RLS policies "
            "on realtime.messages for this role (private channel) or the token's role.",
            topics=[a.topic for a in run], extra=rows,
        ))
    out.extend(_missed_events(ctx))
    return out


def _missed_events(ctx: Context) -> list[Incident]:
    ctx.con.execute(
        "CREATE OR REPLACE TEMP TABLE expected_writes (ts TIMESTAMPTZ, source VARCHAR, \"offset\" BIGINT, "
        "file_id VARCHAR, text VARCHAR, table_name VARCHAR, op VARCHAR, record_id VARCHAR)"
    )
    if ctx.expected_writes:
        ctx.con.executemany(
            "INSERT INTO expected_writes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(w["ts"], w["source"], w["offset"], w["file_id"], w["text"], w["table_name"], w["op"], w["record_id"])
             for w in ctx.expected_writes],
        )
    tol = ctx.tolerance
    candidates = ctx.query("rule_missed_writes", {"before_us": int(tol.total_seconds() * 1e6),
                                                 "after_us": int(3 * tol.total_seconds() * 1e6)})
    candidates = [w for w in candidates if not ctx.is_claimed(w)]
    if not candidates:
        return []
    subscribed = ctx.query("rule_subscribed")
    received_tables = {r[0] for r in ctx.con.execute(
        "SELECT DISTINCT relation FROM changes UNION SELECT DISTINCT table_name FROM log_signals "
        "WHERE signal IN ('received_change', 'empty_record')").fetchall()}
    missed = []
    for w in candidates:
        rel, op = w["table_name"], w["op"]
        if subscribed and not any(
            s["relation"] in (rel, rel.split(".")[0] + ".*") and s["event"] in ("*", op) for s in subscribed
        ):
            continue  # nobody subscribed to this table and operation
        if not subscribed and rel not in received_tables:
            continue  # no sign the client listens to this table at all
        if not ctx.connected_at(w["ts"]) or not ctx.connected_at(w["ts"] + tol):
            continue  # lost to a disconnect: network explains it
        missed.append(w)
    out = []
    reports = ctx.signals("missed_reported")
    for run in bursts(missed, ctx.gap, key=lambda r: r["table_name"]):
        ids = {w["record_id"] for w in run if w.get("record_id")}
        extra = [m for m in reports if run[0]["ts"] - tol <= m["ts"] <= run[-1]["ts"] + ctx.gap and _names_id(m, ids)]
        ctx.claim([r for r in run if r.get("table") == "logs"] + extra)
        ops = Counter(w["op"] for w in run)
        rel = run[0]["table_name"]
        out.append(incident(
            "rls", "events_filtered", run,
            f"{_plural(len(run), 'write')} to {rel} ({', '.join(f'{o} {c}' for o, c in sorted(ops.items()))}) never arrived "
            "as postgres_changes while the client was connected and subscribed: row-level security hides these rows "
            "from the subscriber's role (run the same SELECT as that role to check).",
            extra=extra,
        ))
    return out


# ---- subscription attempts (shared by subscription_failure, rls, auth, db_connectivity) -------

_AUTH = re.compile(r"InvalidJWTToken|MalformedJWT|JwtSignatureError|JwtSignerError|InvalidJWTExpiration|Token has expired|not a valid JWT|Fields `role` and `exp`")
_RLS = re.compile(r"^(Unauthorized|RlsPolicyError)\b|You (do not|no longer) have permission")
_DB = re.compile(r"UnableToConnectToProject|DatabaseLackOfConnections|IncreaseConnectionPool|InitializingProjectConnection|"
                 r"unable to connect to the project database|DatabaseConnectionIssue|UnableToSetPolicies|MissingPartition")
_RATE = re.compile(r"RateLimitReached|Too many")
_TENANT = re.compile(r"TenantNotFound|RealtimeDisabledForTenant|PrivateOnly|TopicNameRequired|RealtimeRestarting|Tenant ")
_FILTER = re.compile(r"filter|Unable to subscribe to changes|RealtimeDisabledForConfiguration|UnableToSubscribeToPostgres|mismatch between server and client bindings")


def classify_failure(reason: str | None, status: str) -> tuple[str, str]:
    """(cause, detail) of a failed subscription attempt from its reason."""
    if status == "timeout":
        return "subscription_failure", "timeout"
    text = reason or ""
    if _AUTH.search(text):
        return "auth", "token_expired" if "xpire" in text else "invalid_token"
    if _RLS.search(text):
        return "rls", "channel_unauthorized"
    if _DB.search(text):
        return "db_connectivity", "join_refused"
    if _RATE.search(text):
        return "subscription_failure", "rate_limit"
    if _TENANT.search(text):
        return "subscription_failure", "tenant"
    if _FILTER.search(text):
        return "subscription_failure", "bad_filter"
    return "subscription_failure", "server_error"


@dataclass
class Attempt:
    """One subscription attempt of a topic: ok, or failed with a reason (from frames or logs)."""

    topic: str
    ts: dt.datetime
    status: str  # ok, error, timeout
    reason: str | None
    rows: list[Row]
    origin: str

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    @property
    def cause(self) -> str | None:
        return classify_failure(self.reason, self.status)[0] if self.failed else None

    @property
    def detail(self) -> str | None:
        return classify_failure(self.reason, self.status)[1] if self.failed else None


def subscription_attempts(ctx: Context) -> list[Attempt]:
    """Every subscription attempt per topic, from join frames when recorded, else from log lines."""
    attempts: list[Attempt] = []
    frame_topics: set[str] = set()
    channel_rows = ctx.query("rule_channel_frames")
    by_session: dict[str, list[Row]] = {}
    for r in channel_rows:
        by_session.setdefault(r["session_id"], []).append(r)
    timeout = dt.timedelta(seconds=ctx.thresholds.analysis.join_timeout_s)
    for rows in by_session.values():
        current: dict[str, Attempt] = {}
        pending: dict[tuple, tuple[Row, Attempt]] = {}
        for r in rows:
            topic = r["topic"]
            if r["direction"] == "out" and r["event"] == "phx_join":
                frame_topics.add(topic)
                a = Attempt(topic, r["ts"], "timeout", None, [r], "frames")
                attempts.append(a)
                pending[(topic, r["ref"])] = (r, a)
                current[topic] = a
            elif r["event"] == "phx_reply" and (topic, r["ref"]) in pending:
                _, a = pending.pop((topic, r["ref"]))
                a.status = "ok" if r["status"] == "ok" else "error"
                a.reason = r["reason"] if a.status != "ok" else None
                a.rows.append(r)
            elif r["event"] == "system" and r["status"] == "error" and topic in current:
                a = current[topic]
                if a.status == "ok" and r["extension"] == "postgres_changes":
                    a.status, a.reason = "error", r["message"]
                    a.rows.append(r)
        last_ts = rows[-1]["ts"]
        last_join: dict[str, int] = {}
        for r in rows:
            if r["event"] == "phx_join":
                last_join[r["topic"]] = r["seq"]
        for (topic, _ref), (join, a) in pending.items():
            superseded = last_join.get(topic, -1) > join["seq"]
            if not superseded and last_ts < join["ts"] + timeout and rows[-1]["event"] != "phx_close":
                a.status = "pending"
    attempts = [a for a in attempts if a.status != "pending"]
    log_rows = ctx.signals("join_error", "join_timeout", "sub_state", "channel_error")
    client_failures = [r for r in log_rows if r["signal"] in ("join_error", "join_timeout")]
    for r in log_rows:
        topic = r["topic"]
        if not topic:
            continue
        if topic in frame_topics:
            # the frames tell the story; the client's lines are more evidence for it
            best = _attempt_in_effect(ctx, attempts, topic, r["ts"], failed=r["signal"] != "sub_state" or r["state"] != "SUBSCRIBED")
            if best is not None:
                best.rows.append(r)
            continue
        if r["signal"] == "join_error":
            attempts.append(Attempt(topic, r["ts"], "error", r["reason"], [r], "logs"))
        elif r["signal"] == "join_timeout":
            attempts.append(Attempt(topic, r["ts"], "timeout", None, [r], "logs"))
        elif r["signal"] == "sub_state":
            if r["state"] == "SUBSCRIBED":
                attempts.append(Attempt(topic, r["ts"], "ok", None, [r], "logs"))
            elif not client_failures and r["state"] == "TIMED_OUT":
                attempts.append(Attempt(topic, r["ts"], "timeout", None, [r], "logs"))
            elif not client_failures and r["state"] == "CHANNEL_ERROR" and r["reason"]:
                attempts.append(Attempt(topic, r["ts"], "error", r["reason"], [r], "logs"))
            else:
                twin = _closest_attempt(ctx, attempts, topic, r["ts"], ctx.tolerance, failed=r["state"] != "SUBSCRIBED")
                if twin is not None:
                    twin.rows.append(r)
    attempts.sort(key=lambda a: a.ts)
    # the server's own line for a refused join: evidence for the client's attempt, else an attempt
    for r in ctx.signals("join_refused", "unauthorized", "auth_error"):
        topic = _server_topic(r["topic"])
        twin = None
        for a in attempts:
            if a.failed and (topic is None or a.topic == topic) and abs((a.ts - r["ts"]).total_seconds()) <= ctx.tolerance.total_seconds() \
                    and a.reason and r["text"] and (a.reason in r["text"] or r["text"] in a.reason):
                twin = a
                break
        if twin is not None:
            twin.rows.append(r)
        elif topic is not None and r["signal"] != "auth_error":
            attempts.append(Attempt(topic, r["ts"], "error", r["text"], [r], "server"))
    attempts.sort(key=lambda a: a.ts)
    # bot lines reported after the client's own line: attach them to the attempt they repeat
    for a in attempts:
        if a.origin == "logs" and a.failed:
            for r in log_rows:
                if r["signal"] == "sub_state" and r["topic"] == a.topic and r["state"] in ("CHANNEL_ERROR", "TIMED_OUT") \
                        and a.ts <= r["ts"] <= a.ts + ctx.tolerance and r not in a.rows and r.get("reason") == a.reason:
                    a.rows.append(r)
    return attempts


def _server_topic(topic: str | None) -> str | None:
    """The server names a channel without ``realtime:`` ("Channel topic: public:orders")."""
    if not topic:
        return None
    return topic if topic.startswith("realtime:") else "realtime:" + topic


ATTEMPT_REACH = dt.timedelta(seconds=10)  # how far (beyond the tolerance) a client line may be from the attempt it reports on
LOG_RESOLUTION = dt.timedelta(milliseconds=1)  # log lines carry milliseconds, cut down: a line may read up to 1 ms early


def _closest_attempt(ctx: Context, attempts: list[Attempt], topic: str, ts: dt.datetime, tol: dt.timedelta,
                     failed: bool) -> Attempt | None:
    """The attempt of ``topic`` nearest to ``ts`` (within ``tol`` + :data:`ATTEMPT_REACH`) with that outcome."""
    index = _attempt_index(ctx, attempts)
    ordered = index.get(topic, [])
    reach = tol + ATTEMPT_REACH
    lo = bisect.bisect_left(ordered, ts - reach, key=lambda a: a.ts)
    hi = bisect.bisect_right(ordered, ts + reach, key=lambda a: a.ts)
    best = None
    for a in ordered[lo:hi]:
        if a.failed == failed and (best is None or abs(a.ts - ts) < abs(best.ts - ts)):
            best = a
    return best


def _attempt_in_effect(ctx: Context, attempts: list[Attempt], topic: str, ts: dt.datetime, failed: bool) -> Attempt | None:
    """The attempt of ``topic`` a client line at ``ts`` reports on, when it has that outcome.

    A client's line follows the frames it reports (the proxy sees a reply before the client does),
    so it is about the last attempt made by then. When that attempt had the other outcome, the line
    tells of something that happened to the channel later (a token that expired, a socket that
    closed) and belongs to no attempt: the rule of that cause takes it. Only when no attempt was
    made by then (the client's clock runs behind the proxy's) is the nearest one taken.
    """
    ordered = _attempt_index(ctx, attempts).get(topic, [])
    i = bisect.bisect_right(ordered, ts + LOG_RESOLUTION, key=lambda a: a.ts) - 1
    if i >= 0 and ts - ordered[i].ts <= ctx.tolerance + ATTEMPT_REACH:
        return ordered[i] if ordered[i].failed == failed else None
    return _closest_attempt(ctx, attempts, topic, ts, ctx.tolerance, failed)


def _attempt_index(ctx: Context, attempts: list[Attempt]) -> dict[str, list[Attempt]]:
    """Attempts per topic sorted by time, kept on the context and rebuilt when the list grew."""
    cached = ctx._attempt_index
    if cached is not None and cached[0] is attempts and cached[1] == len(attempts):
        return cached[2]
    index: dict[str, list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: a.ts):
        index.setdefault(a.topic, []).append(a)
    ctx._attempt_index = (attempts, len(attempts), index)
    return index


def _attempt_bursts(attempts: list[Attempt], gap: dt.timedelta) -> list[list[Attempt]]:
    rows = [{"ts": a.ts, "a": a} for a in attempts]
    return [[r["a"] for r in run] for run in bursts(rows, gap, key=lambda r: r["a"].topic)]


@rule("subscription_failure")
def subscription_failure(ctx: Context) -> list[Incident]:
    """Joins refused (rate limits, bad filter, tenant) or timed out, grouped per topic."""
    failed = [a for a in ctx.attempts if a.cause == "subscription_failure"]
    out = []
    for run in _attempt_bursts(failed, ctx.gap):
        rows = [r for a in run for r in a.rows]
        ctx.claim(rows)
        details = Counter(a.detail for a in run)
        detail = max(details, key=lambda d: (details[d], -[a.detail for a in run].index(d)))
        reasons = Counter(a.reason or "no reply (timeout)" for a in run)
        what = "; ".join(f"{r} ({c})" for r, c in reasons.most_common(3))
        out.append(incident(
            "subscription_failure", detail, [a.rows[0] for a in run],
            f"{_plural(len(run), 'subscription attempt')} to {run[0].topic} failed: {what}.",
            topics=[run[0].topic], extra=rows,
        ))
    reported = [r for r in ctx.signals("sub_failures_reported") if not ctx.is_claimed(r)]
    for r in reported:  # the bot's own "N consecutive attempts failed" lines belong to the failures they count
        for inc in out:
            if inc.start and inc.start - ctx.tolerance <= r["ts"] <= inc.end + ctx.gap:
                inc.evidence.append(evidence_from_row(r))
                ctx.claim([r])
                break
    return out


# ---- auth -------------------------------------------------------------------------------------


@rule("auth")
def auth(ctx: Context) -> list[Incident]:
    """Expired or invalid tokens: join refusals, system messages, refused handshakes, server lines."""
    refused = [a for a in ctx.attempts if a.cause == "auth"]
    rows: list[Row] = []
    for a in refused:
        rows.append(a.rows[0])
    extra = [r for a in refused for r in a.rows]
    system = [r for r in ctx.query("rule_channel_frames") if r["event"] == "system" and r["status"] == "error"
              and _AUTH.search(r["message"] or "")]
    handshakes = [r for r in ctx.query("rule_lifecycle_frames") if r["kind"] == "error" and r["status"] in (401, 403)]
    # the client's "channel T error: {... Token has expired ...}" line repeats a system message
    lines = [r for r in ctx.signals("auth_error", "connect_failed", "channel_error")
             if r["signal"] == "auth_error" or (r["signal"] == "connect_failed" and r["code"] in (401, 403))
             or (r["signal"] == "channel_error" and _AUTH.search(r["text"] or ""))]
    lines = [r for r in lines if not ctx.is_claimed(r)]
    primary = rows + system + handshakes
    secondary = lines
    if not primary:
        primary, secondary = lines, []
    out = []
    for run in bursts(primary, ctx.gap):
        more = near(secondary, run[0]["ts"], run[-1]["ts"], ctx.tolerance)
        mine = [e for e in extra if run[0]["ts"] - ctx.tolerance <= e["ts"] <= run[-1]["ts"] + ctx.tolerance]
        ctx.claim(run + more + mine)
        texts = " ".join((r.get("reason") or r.get("message") or r.get("text") or "") for r in run)
        detail = "token_expired" if "xpire" in texts else "invalid_token"
        topics = [r.get("topic") for r in run]
        out.append(incident(
            "auth", detail, run,
            f"{_plural(len(run), 'request')} refused for the token ("
            + ("expired" if detail == "token_expired" else "invalid or missing claims")
            + "): refresh the session and send the new token (set_auth / access_token) before it expires.",
            topics=topics, extra=more + mine,
        ))
    return out


# ---- network ----------------------------------------------------------------------------------

_NETWORK_DETAIL_ORDER = ("client_gave_up", "reconnect_storm", "heartbeat_timeout", "connect_failed", "abnormal_close", "connection_lost")
STORM_SESSIONS = 5  # connections opened within one burst that make it a reconnect storm


@rule("network")
def network(ctx: Context) -> list[Incident]:
    """Abnormal closes, failed connects, heartbeat timeouts, reconnect storms, a client that gave up."""
    events: list[Row] = []
    opens: list[Row] = []
    for r in ctx.query("rule_lifecycle_frames"):
        if r["kind"] == "open":
            opens.append(r)
        elif r["kind"] == "close" and ((r["close_code"] not in NORMAL_CLOSES) or r["closed_by"] == "network") \
                and r["why"] != "proxy stopped":
            events.append({**r, "what": "abnormal_close"})
        elif r["kind"] == "error" and r["phase"] == "connect" and r["status"] not in (401, 403):
            events.append({**r, "what": "connect_failed"})
    for h in ctx.query("rule_heartbeat_timeouts"):
        events.append({"ts": h["ts"], "table": "frames", "source": None, "seq": h["seq"], "session_id": h["session_id"],
                       "text": "heartbeat without reply before the next one", "what": "heartbeat_timeout"})
    for r in ctx.signals("ws_closed", "connect_failed", "gave_up", "down_reported"):
        if r["signal"] == "ws_closed" and r["code"] in (1000, 1001):
            continue
        if r["signal"] == "connect_failed" and r["code"] in (401, 403):
            continue
        if ctx.is_claimed(r):
            continue
        what = {"ws_closed": "abnormal_close", "connect_failed": "connect_failed", "gave_up": "client_gave_up",
                "down_reported": "connection_lost"}[r["signal"]]
        events.append({**r, "what": what})
    # the bot saying the connection is down repeats an outage the client lines already show
    reports = [e for e in events if e["what"] == "connection_lost"]
    events = [e for e in events if e["what"] != "connection_lost"]
    if not events and not reports:
        return []
    joins = ctx.con.execute("SELECT session_id, topic, ts FROM joins").fetchall()
    topic_hints = ctx.signals("joining", "sub_state")
    out = []
    runs = bursts(events, ctx.gap)
    alone = []
    for rep in reports:
        owner = [run for run in runs if run[0]["ts"] <= rep["ts"] and (
            rep["ts"] <= run[-1]["ts"] + ctx.gap or not ctx.connected_at(rep["ts"]))]
        if owner:
            owner[-1].append(rep)
        else:
            alone.append(rep)
    runs += bursts(alone, ctx.gap)
    for run in runs:
        start, end = run[0]["ts"], max(r["ts"] for r in run if r["what"] != "connection_lost") \
            if any(r["what"] != "connection_lost" for r in run) else run[-1]["ts"]
        kinds = {r["what"] for r in run}
        session_opens = [o for o in opens if start - ctx.tolerance <= o["ts"] <= end + ctx.tolerance]
        if len(session_opens) >= STORM_SESSIONS or sum(1 for r in run if r["what"] == "connect_failed" and r["table"] == "frames") >= STORM_SESSIONS:
            kinds.add("reconnect_storm")
        detail = next(d for d in _NETWORK_DETAIL_ORDER if d in kinds)
        frame_n = sum(1 for r in run if r["table"] == "frames")
        log_n = sum(1 for r in run if r["table"] == "logs" and r["what"] in ("abnormal_close", "connect_failed"))
        count = max(frame_n, log_n) or len(run)
        sessions = {r.get("session_id") for r in run if r.get("session_id")}
        topics = {t for s, t, _ in joins if s in sessions}
        topics |= {h["topic"] for h in near(topic_hints, start, end, ctx.tolerance) if h["topic"]}
        ctx.claim(run)
        codes = Counter(r.get("close_code") or r.get("code") for r in run if r["what"] == "abnormal_close")
        parts = []
        if codes:
            parts.append("closed with " + ", ".join(f"{c or 'no code'} ({n})" for c, n in sorted(codes.items(), key=lambda x: str(x[0]))))
        nfail = sum(1 for r in run if r["what"] == "connect_failed")
        if nfail:
            parts.append(f"{_plural(nfail, 'failed connect')}")
        nhb = sum(1 for r in run if r["what"] == "heartbeat_timeout")
        if nhb:
            parts.append(f"{_plural(nhb, 'heartbeat')} without reply")
        if len(session_opens) > 1:
            parts.append(f"{len(session_opens)} connections opened")
        advice = {
            "client_gave_up": "the client stopped retrying for good (realtime-py 2.34 does so silently after max_retries): "
                              "restart it or raise max_retries, and alert on it",
            "reconnect_storm": "the client reconnects in a loop; check the network path and the server",
            "heartbeat_timeout": "heartbeats went unanswered: the link was half dead",
            "connect_failed": "the server could not be reached",
            "abnormal_close": "the connection dropped; the client reconnected",
            "connection_lost": "the bot reported the connection lost",
        }[detail]
        out.append(incident(
            "network", detail, run,
            f"Connection trouble from {_hm(start)} to {_hm(end)}: {'; '.join(parts) or 'connection lost'}; {advice}.",
            count=count, topics=topics,
        ))
    return out


# ---- subscription_race ------------------------------------------------------------------------


@rule("subscription_race")
def subscription_race(ctx: Context) -> list[Incident]:
    """Overlapping joins of one topic, a join without leave (duplicate channel), lost callbacks."""
    rows = ctx.query("rule_channel_frames")
    timeout = dt.timedelta(seconds=ctx.thresholds.analysis.join_timeout_s)
    findings: list[tuple[str, Row, list[Row]]] = []
    last_bindings: dict[str, tuple[int, Row]] = {}
    state: dict[tuple, dict] = {}
    for r in rows:
        key = (r["session_id"], r["topic"])
        s = state.setdefault(key, {"in_flight": {}, "joined": None, "leaving": None, "joins": [], "overlapped": set()})
        if r["direction"] == "out" and r["event"] == "phx_join":
            s["in_flight"] = {ref: j for ref, j in s["in_flight"].items() if r["ts"] - j["ts"] < timeout}
            if s["in_flight"]:
                pass  # overlapping only if the earlier join is still answered (see phx_reply below)
            elif s["leaving"] is not None:
                findings.append(("join_during_leave", r, [s["leaving"]]))
            elif s["joined"] is not None:
                findings.append(("join_without_leave", r, [s["joined"]]))
            prev = last_bindings.get(r["topic"])
            if prev is not None and r["n_bindings"] < prev[0]:
                findings.append(("callbacks_lost", r, [prev[1]]))
            last_bindings[r["topic"]] = (r["n_bindings"], r)
            s["in_flight"][r["ref"]] = r
            s["joins"].append(r)
        elif r["direction"] == "out" and r["event"] == "phx_leave":
            s["leaving"], s["joined"] = r, None
        elif r["event"] == "phx_reply":
            join = s["in_flight"].pop(r["ref"], None)
            if join is not None:
                i = bisect.bisect_right(s["joins"], join["seq"], key=lambda j: j["seq"])
                later = []
                while i < len(s["joins"]) and s["joins"][i]["seq"] < r["seq"]:
                    if s["joins"][i]["seq"] not in s["overlapped"]:
                        later.append(s["joins"][i])
                        break
                    i += 1
                if later:  # a second join went out before this one was answered: both were in flight
                    s["overlapped"].add(later[0]["seq"])
                    findings.append(("overlapping_joins", later[0], [join, r]))
            if join is not None and r["status"] == "ok":
                s["joined"] = r
            if s["leaving"] is not None and r["ref"] == s["leaving"]["ref"]:
                s["leaving"] = None
        elif r["event"] in ("phx_close", "phx_error") or (r["event"] == "system" and r["status"] == "error"):
            s["joined"], s["leaving"] = None, None
            if r["event"] != "system":
                s["in_flight"] = {}
    out = []
    groups = bursts([{"ts": f[1]["ts"], "f": f} for f in findings], ctx.gap, key=lambda x: (x["f"][0], x["f"][1]["topic"]))
    for run in groups:
        detail = run[0]["f"][0]
        topic = run[0]["f"][1]["topic"]
        joins = [x["f"][1] for x in run]
        extra = [e for x in run for e in x["f"][2]]
        ctx.claim(joins + extra)
        text = {
            "overlapping_joins": "a join was sent while an earlier join of the same topic had no reply yet",
            "join_during_leave": "a join was sent while a leave of the same topic was pending",
            "join_without_leave": "the topic was joined again on the same connection without leaving it first (duplicate channel)",
            "callbacks_lost": "a rejoin asked for fewer postgres_changes bindings than before: callbacks were lost",
        }[detail]
        out.append(incident(
            "subscription_race", detail, joins,
            f"{_plural(len(joins), 'time')} on {topic}: {text}; subscribe each channel once and await it before "
            "subscribing again.",
            topics=[topic], extra=extra,
        ))
    return out


# ---- db_connectivity --------------------------------------------------------------------------


@rule("db_connectivity")
def db_connectivity(ctx: Context) -> list[Incident]:
    """Bot or server lines saying the database cannot be reached; joins refused for it."""
    problems = [r for r in ctx.signals("db_error") if not ctx.is_claimed(r)]
    system = [r for r in ctx.query("rule_channel_frames")
              if r["event"] == "system" and r["status"] == "error" and _DB.search(r["message"] or "")]
    joins = [a for a in ctx.attempts if a.cause == "db_connectivity"]
    primary = problems + system + [a.rows[0] for a in joins]
    if not primary:
        return []
    out = []
    for run in bursts(primary, ctx.gap):
        start, end = run[0]["ts"], run[-1]["ts"]
        more = ctx.query("rule_health", {"start": start - ctx.gap, "end": end + ctx.gap, "bad": True, "limit": 10_000})
        more += [r for a in joins for r in a.rows if start <= a.ts <= end]
        ctx.claim(run + more)
        first = min([start] + [h["ts"] for h in more])
        out.append(incident(
            "db_connectivity", "unreachable", run,
            f"The database could not be reached from {_hm(first)} to {_hm(end)} ({_plural(len(run), 'error')}); "
            "check the database host, its connection limits and the pooler.",
            topics=[r.get("topic") for r in run], extra=more,
        ))
    return out


# ---- running ----------------------------------------------------------------------------------


def run_rules(ctx: Context, causes: Iterable[str] | None = None) -> list[Incident]:
    """Run the rules (all, in registry order, or ``causes``) and number the incidents by start time."""
    found: list[Incident] = []
    for cause, fn in RULES.items():
        if causes is not None and cause not in causes:
            continue
        found.extend(fn(ctx))
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    found.sort(key=lambda i: (i.start or epoch, i.cause, i.detail))
    for n, inc in enumerate(found, 1):
        inc.id = f"inc-{n}"
    return found


def parse_writes(text: str, origin: str = "writes") -> list[Row]:
    """Expected changes from ``--writes FILE``: JSON lines ``{"ts", "table", "type", "id"}`` or CSV with that header."""
    from recorder.errors import InputError

    rows = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    if lines[0].lstrip().startswith("{"):
        records = []
        for n, ln in enumerate(lines, 1):
            try:
                records.append(json.loads(ln))
            except ValueError as err:
                raise InputError(f"{origin}:{n}: not a JSON object ({err})") from None
    else:
        import csv

        records = list(csv.DictReader(lines))
    for n, rec in enumerate(records, 1):
        try:
            ts = dt.datetime.fromisoformat(str(rec["ts"]).replace("Z", "+00:00"))
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=dt.UTC)
            table = str(rec["table"])
            if "." not in table:
                table = "public." + table
            op = str(rec.get("type") or rec.get("op")).upper()
            if op not in ("INSERT", "UPDATE", "DELETE"):
                raise ValueError(f"type {op!r} is not INSERT, UPDATE or DELETE")
        except (KeyError, ValueError, TypeError) as err:
            raise InputError(f"{origin}: record {n}: needs ts (ISO 8601), table and type ({err})") from None
        rid = rec.get("id")
        rows.append({
            "ts": ts, "table": "writes", "source": origin, "offset": n, "file_id": origin, "seq": None,
            "session_id": None, "text": f"expected {op} on {table}" + (f" id={rid}" if rid not in (None, "") else ""),
            "table_name": table, "op": op, "record_id": None if rid in (None, "") else str(rid),
        })
    return rows
