"""Escalation rules (design.md, "Escalation rules"): a registry of small functions, one per rule.

Each takes the rule :class:`Context` and the incidents found and returns one
:class:`~analyzer.model.Escalation`: ``breached`` True/False with the measured ``value``
against the ``limit``, or None with a ``reason`` when its inputs were not recorded. Limits
compare strictly where the runbook says "more than" (down for more than 10 minutes, error
rate above 5 %) and inclusively for counts ("3 consecutive failures" escalates at 3).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from analyzer.db import named_sql
from analyzer.model import Escalation, Incident
from analyzer.rules import Context
from analyzer.thresholds import format_duration

EscalationFunction = Callable[[Context, list[Incident], dt.datetime | None], Escalation]
ESCALATIONS: dict[str, EscalationFunction] = {}


def escalation(name: str) -> Callable[[EscalationFunction], EscalationFunction]:
    def register(fn: EscalationFunction) -> EscalationFunction:
        ESCALATIONS[name] = fn
        return fn

    return register


def _overlapping(incidents: list[Incident], causes: tuple[str, ...], start, end, topic: str | None = None) -> list[str]:
    ids = []
    for inc in incidents:
        if inc.cause not in causes or inc.start is None:
            continue
        if inc.start <= end and (inc.end or inc.start) >= start and (topic is None or not inc.topics or topic in inc.topics):
            ids.append(inc.id)
    return ids


def _scalar(ctx: Context, sql: str):
    return ctx.scalar(sql)


@escalation("realtime_down")
def realtime_down(ctx: Context, incidents: list[Incident], window_end: dt.datetime | None) -> Escalation:
    limit = ctx.thresholds.realtime_down.for_s
    has_frames = bool(ctx.query("rule_lifecycle_frames"))  # the open, close and error rows
    has_lines = _scalar(
        ctx,
        "SELECT count(*) FROM log_signals WHERE signal IN ('connected', 'ws_closed', 'connect_failed', 'gave_up', "
        "'health', 'sub_state', 'connecting', 'down_reported', 'up_reported')",
    ) > 0
    if not has_frames and not has_lines:
        return Escalation("realtime_down", None, None, limit, "s", reason=(
            "not evaluated: no connection records (no frames from rt-record proxy/subscribe, and no client or bot "
            "log lines about the connection)"))
    worst, worst_len, still_down = None, -1.0, False
    for d in ctx.down_intervals:
        end = d["end"] or window_end or d["start"]
        length = (end - d["start"]).total_seconds()
        if length > worst_len:
            worst, worst_len, still_down = d, length, d["end"] is None
    if worst is None:
        return Escalation("realtime_down", False, 0.0, limit, "s", reason="the connection never went down")
    breached = worst_len > limit
    end = worst["end"] or window_end or worst["start"]
    reason = (f"longest outage {format_duration(worst_len)} from {worst['origin']} ({worst['start_text']!s:.80})"
              + (", still down at the end of the window" if still_down else ""))
    return Escalation(
        "realtime_down", breached, round(worst_len, 3), limit, "s", since=worst["start"], reason=reason,
        incidents=_overlapping(incidents, ("network", "auth"), worst["start"], end),
    )


@escalation("subscription_failures")
def subscription_failures(ctx: Context, incidents: list[Incident], window_end) -> Escalation:
    limit = ctx.thresholds.subscription_failures.consecutive
    attempts = ctx.attempts
    if not attempts:
        return Escalation("subscription_failures", None, None, float(limit), "attempts", reason=(
            "not evaluated: no subscription attempts recorded (no phx_join frames, no join or subscription-state "
            "lines in the logs)"))
    best_run: list = []
    runs: dict[str, list] = {}
    for a in attempts:
        run = runs.setdefault(a.topic, [])
        if a.failed:
            run.append(a)
            if len(run) > len(best_run):
                best_run = list(run)
        else:
            run.clear()
    value = len(best_run)
    if not best_run:
        return Escalation("subscription_failures", False, 0.0, float(limit), "attempts",
                          reason=f"{len(attempts)} attempts, none failed")
    topic = best_run[0].topic
    return Escalation(
        "subscription_failures", value >= limit, float(value), float(limit), "attempts", since=best_run[0].ts,
        reason=f"{value} consecutive failed attempts on {topic}",
        incidents=_overlapping(incidents, ("subscription_failure", "rls", "auth", "db_connectivity"),
                               best_run[0].ts, best_run[-1].ts, topic),
    )


@escalation("db_connectivity")
def db_connectivity(ctx: Context, incidents: list[Incident], window_end) -> Escalation:
    limit = ctx.thresholds.db_connectivity.for_s
    n_logs = _scalar(ctx, "SELECT count(*) FROM logs")
    db_incidents = [i for i in incidents if i.cause == "db_connectivity"]
    if not n_logs and not db_incidents:
        return Escalation("db_connectivity", None, None, limit, "s", reason=(
            "not evaluated: no bot or server log lines recorded (rt-record logs bot.log server.log ...)"))
    if not db_incidents:
        return Escalation("db_connectivity", False, 0.0, limit, "s", reason="no database connectivity errors")
    worst, worst_len, worst_inc = None, -1.0, None
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    for inc in db_incidents:
        start = min(e.ts for e in inc.evidence if e.ts is not None)
        last_bad = max(e.ts for e in inc.evidence if e.ts is not None)
        recovery = ctx.query("rule_health", {"start": last_bad + dt.timedelta(microseconds=1), "end": far, "bad": False, "limit": 1})
        end = recovery[0]["ts"] if recovery else inc.end  # no recovery line: as long as the problem lines go on
        length = (end - start).total_seconds()
        if length > worst_len:
            worst, worst_len, worst_inc = start, length, inc
    return Escalation(
        "db_connectivity", worst_len > limit, round(worst_len, 3), limit, "s", since=worst,
        reason=f"database problems for {format_duration(worst_len)}", incidents=[worst_inc.id],
    )


@escalation("payload_error_rate")
def payload_error_rate(ctx: Context, incidents: list[Incident], window_end) -> Escalation:
    t = ctx.thresholds.payload_error_rate
    total = _scalar(ctx, "SELECT count(*) FROM changes")
    if not total:
        return Escalation("payload_error_rate", None, None, t.rate, "ratio", reason=(
            "not evaluated: no postgres_changes frames recorded (record with rt-record proxy or subscribe)"))
    row = ctx.con.execute(named_sql("esc_payload_error_rate"),
                          {"window_s": max(int(round(t.window_s)), 1), "min_events": t.min_events}).fetchone()
    if row is None:
        bad = _scalar(ctx, "SELECT count(*) FROM changes WHERE problem IS NOT NULL")
        return Escalation("payload_error_rate", False, round(bad / total, 6), t.rate, "ratio", reason=(
            f"fewer than {t.min_events} payloads in every {format_duration(t.window_s)} window "
            f"({bad} of {total} invalid overall)"))
    ts, n, bad_n, rate, first_ts = row
    return Escalation(
        "payload_error_rate", rate > t.rate, round(float(rate), 6), t.rate, "ratio", since=first_ts,
        reason=f"{int(bad_n)} of {n} payloads invalid in the {format_duration(t.window_s)} up to {ts:%H:%M:%S}",
        incidents=_overlapping(incidents, ("invalid_payload", "payload_too_large", "rls"), first_ts, ts),
    )


def evaluate(ctx: Context, incidents: list[Incident], window_end: dt.datetime | None) -> list[Escalation]:
    return [fn(ctx, incidents, window_end) for fn in ESCALATIONS.values()]
