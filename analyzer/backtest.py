"""Escalation backtest: how often each escalation rule would have fired over a recording under other limits.

:func:`episodes` lists what each rule measures, once per episode (an outage, a run of failed
subscription attempts, a database problem, a validation window); :func:`backtest` counts, for a
grid of limits, the episodes that cross each limit, beside the escalation rule's own verdict with
that limit. Both return Polars DataFrames, for ``notebooks/thresholds_backtest.ipynb`` and for
choosing the limits of a thresholds file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl

from analyzer.db import connect
from analyzer.escalations import ESCALATIONS
from analyzer.model import Report
from analyzer.report import build_report, pin_window
from analyzer.rules import Context
from analyzer.thresholds import Thresholds
from recorder.errors import ConfigError

# Limits tried when none are given, in each rule's unit (seconds, attempts, ratio). They span the
# runbook's defaults (10 min, 3 attempts, 5 min, 5 %) from much stricter to much looser.
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "realtime_down": (60, 120, 300, 600, 900, 1200, 1800),
    "subscription_failures": (1, 2, 3, 4, 5),
    "db_connectivity": (30, 60, 120, 300, 600, 900),
    "payload_error_rate": (0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
}

# rule -> (table of Thresholds, attribute holding the limit, unit)
LIMITS: dict[str, tuple[str, str, str]] = {
    "realtime_down": ("realtime_down", "for_s", "s"),
    "subscription_failures": ("subscription_failures", "consecutive", "attempts"),
    "db_connectivity": ("db_connectivity", "for_s", "s"),
    "payload_error_rate": ("payload_error_rate", "rate", "ratio"),
}

EPISODE_SCHEMA = {
    "rule": pl.String,
    "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "value": pl.Float64,
    "unit": pl.String,
    "topic": pl.String,
    "detail": pl.String,
}

BACKTEST_SCHEMA = {
    "rule": pl.String,
    "limit": pl.Float64,
    "unit": pl.String,
    "configured": pl.Boolean,
    "fired": pl.Int64,
    "breached": pl.Boolean,
    "value": pl.Float64,
}


def with_limit(thresholds: Thresholds, rule: str, limit: float) -> Thresholds:
    """``thresholds`` with the limit of one escalation rule replaced.

    >>> with_limit(Thresholds(), "subscription_failures", 5).subscription_failures.consecutive
    5
    """
    if rule not in LIMITS:
        raise ConfigError(f"unknown escalation rule {rule!r} (valid: {', '.join(LIMITS)})")
    table, attr, _unit = LIMITS[rule]
    value: float | int = int(limit) if attr == "consecutive" else float(limit)
    part = dataclasses.replace(getattr(thresholds, table), **{attr: value})
    return dataclasses.replace(thresholds, **{table: part})


def _check_limit(rule: str, limit: object) -> None:
    ok = isinstance(limit, int | float) and not isinstance(limit, bool) and limit >= 0
    if ok and rule == "subscription_failures":
        ok = limit >= 1 and float(limit).is_integer()
    if ok and rule == "payload_error_rate":
        ok = limit <= 1
    if not ok:
        want = {"subscription_failures": "a whole number >= 1", "payload_error_rate": "a rate between 0 and 1"}
        raise ConfigError(f"{rule}: limit {limit!r} is not {want.get(rule, 'a number of seconds >= 0')}")


def current_limit(thresholds: Thresholds, rule: str) -> float:
    """The limit ``thresholds`` sets for ``rule``, in the rule's unit."""
    table, attr, _unit = LIMITS[rule]
    return float(getattr(getattr(thresholds, table), attr))


# ---- episodes: what each rule measures, one row per episode ---------------------------------------


def episodes(store: str | Path, thresholds: Thresholds | None = None, report: Report | None = None) -> pl.DataFrame:
    """One row per episode each escalation rule measures, with the value its limit is held against.

    * ``realtime_down``: each outage (overlapping down intervals of frames and logs are one
      outage); value: its longest interval in seconds, as the rule measures it (an outage still
      open at the end runs to the end of the recording).
    * ``subscription_failures``: each run of consecutive failed attempts on a topic; value: its length.
    * ``db_connectivity``: each database incident; value: seconds until the bot or server said
      it recovered (the rule's own measure, evaluated for that incident alone).
    * ``payload_error_rate``: each validation window the rule considers (``window`` seconds
      ending at a second that holds changes, with at least ``min_events`` changes); value: the
      share of invalid payloads.

    ``report`` is ``build_report(store, thresholds=thresholds)`` when the caller has it already.
    Columns: rule, start, end, value, unit, topic, detail.
    """
    thresholds = thresholds or Thresholds()
    report = report or build_report(store, thresholds=thresholds)
    con = connect(store)
    try:
        return _episodes(_context(con, thresholds), report)
    finally:
        con.close()


def _context(con, thresholds: Thresholds) -> Context:
    """The rules' context over the whole recording, set up as ``build_report`` sets up its own."""
    pin_window(con, None, None, thresholds)
    return Context(con, thresholds)


def _episodes(ctx: Context, report: Report) -> pl.DataFrame:
    rows = [
        *_outages(ctx, report.window_end),
        *_failure_runs(ctx),
        *_db_problems(ctx, report),
        *_rate_windows(ctx.con, ctx.thresholds),
    ]
    return pl.DataFrame(rows, schema=EPISODE_SCHEMA, orient="row")


def _outages(ctx: Context, window_end: dt.datetime | None) -> list[tuple]:
    out: list[list] = []  # [start, end, longest, origins]
    for d in sorted(ctx.down_intervals, key=lambda d: d["start"]):
        end = d["end"] or window_end or d["start"]
        length = (end - d["start"]).total_seconds()
        if out and d["start"] <= out[-1][1]:
            last = out[-1]
            last[1], last[2] = max(last[1], end), max(last[2], length)
            last[3].add(d["origin"])
        else:
            out.append([d["start"], end, length, {d["origin"]}])
    return [("realtime_down", s, e, round(v, 3), "s", None, "+".join(sorted(o))) for s, e, v, o in out]


def _failure_runs(ctx: Context) -> list[tuple]:
    runs: list[list] = []
    current: dict[str, list] = {}
    for a in ctx.attempts:  # sorted by time
        if not a.failed:
            current.pop(a.topic, None)
            continue
        run = current.get(a.topic)
        if run is None:
            run = current[a.topic] = []
            runs.append(run)
        run.append(a)
    return [
        ("subscription_failures", run[0].ts, run[-1].ts, float(len(run)), "attempts", run[0].topic,
         ", ".join(dict.fromkeys(a.detail or a.status for a in run)))
        for run in runs
    ]


def _db_problems(ctx: Context, report: Report) -> list[tuple]:
    rows = []
    measure = ESCALATIONS["db_connectivity"]
    for inc in report.incidents:
        if inc.cause != "db_connectivity":
            continue
        esc = measure(ctx, [inc], report.window_end)  # the rule's measure, for this incident alone
        start = esc.since or inc.start
        end = start + dt.timedelta(seconds=esc.value or 0.0) if start is not None else inc.end
        rows.append(("db_connectivity", start, end, esc.value, "s", ", ".join(inc.topics) or None, inc.id))
    return rows


def _rate_windows(con, thresholds: Thresholds) -> list[tuple]:
    """The windows of ``esc_payload_error_rate.sql``: per second with changes, the window ending there."""
    t = thresholds.payload_error_rate
    window_s = max(int(round(t.window_s)), 1)
    changes = con.sql("SELECT ts, problem IS NOT NULL AS bad FROM changes WHERE ts IS NOT NULL").pl()
    if changes.is_empty():
        return []
    per_second = (
        changes.group_by(pl.col("ts").dt.truncate("1s").alias("sec"))
        .agg(n=pl.len(), bad=pl.col("bad").sum(), first_ts=pl.col("ts").min(), last_ts=pl.col("ts").max())
        .sort("sec")
    )
    windows = (
        per_second.rolling(index_column="sec", period=f"{window_s}s")  # (sec - window, sec], as RANGE window-1 PRECEDING
        .agg(n=pl.col("n").sum(), bad=pl.col("bad").sum(), first_ts=pl.col("first_ts").min(),
             last_ts=pl.col("last_ts").max())
        .filter(pl.col("n") >= t.min_events)
    )
    return [
        ("payload_error_rate", r["first_ts"], r["last_ts"], round(r["bad"] / r["n"], 6), "ratio", None,
         f"{r['bad']} of {r['n']} invalid")
        for r in windows.iter_rows(named=True)
    ]


# ---- counting fires --------------------------------------------------------------------------------

FireCount = Callable[[pl.DataFrame, float], int]


def _longer_than(rows: pl.DataFrame, limit: float) -> int:
    """Durations: the runbook says "more than", so an episode fires when strictly longer."""
    return rows.filter(pl.col("value") > limit).height


def _at_least(rows: pl.DataFrame, limit: float) -> int:
    """Counts: "3 consecutive failures" escalates at the third."""
    return rows.filter(pl.col("value") >= limit).height


def _runs_above(rows: pl.DataFrame, limit: float) -> int:
    """Rates: consecutive windows above the limit are one firing (the rule stays breached)."""
    above = rows.sort("end")["value"] > limit
    return int((above & ~above.shift(1, fill_value=False)).sum())


FIRES: dict[str, FireCount] = {
    "realtime_down": _longer_than,
    "subscription_failures": _at_least,
    "db_connectivity": _longer_than,
    "payload_error_rate": _runs_above,
}


def fire_count(episodes_of_store: pl.DataFrame, rule: str, limit: float) -> int:
    """How many times ``rule`` fires at ``limit`` over the episodes of :func:`episodes`."""
    if rule not in FIRES:
        raise ConfigError(f"unknown escalation rule {rule!r} (valid: {', '.join(FIRES)})")
    return FIRES[rule](episodes_of_store.filter(pl.col("rule") == rule), limit)


def backtest(
    store: str | Path,
    grid: Mapping[str, Sequence[float]] | None = None,
    thresholds: Thresholds | None = None,
) -> pl.DataFrame:
    """For each escalation rule and each limit of ``grid``: how often the rule would have fired.

    ``grid`` maps a rule name to the limits to try, in its unit (seconds for ``realtime_down``
    and ``db_connectivity``, attempts for ``subscription_failures``, a ratio for
    ``payload_error_rate``); default :data:`DEFAULT_GRID`. The other settings (for example
    ``payload_error_rate.window`` and ``min_events``) come from ``thresholds``.

    Columns: ``rule``, ``limit``, ``unit``; ``configured`` (the limit of ``thresholds``);
    ``fired`` (episodes crossing the limit, see :func:`episodes`); ``breached`` and ``value``
    (the escalation rule's own verdict with that limit, on the incidents of ``build_report``:
    breached, and the worst value it measured).
    ``fired`` and ``breached`` are null where the rule cannot be evaluated (its inputs were not
    recorded). ``breached`` is true exactly when ``fired`` is above 0.

    Example::

        df = backtest("fixtures/scenarios/join_failures/store", {"subscription_failures": [2, 3, 4]})
        df.select("limit", "fired", "breached")   # 1, 1, 0 / true, true, false
    """
    base = thresholds or Thresholds()
    grid = dict(DEFAULT_GRID if grid is None else grid)
    for rule, limits in grid.items():
        if rule not in LIMITS:
            raise ConfigError(f"unknown escalation rule {rule!r} in the grid (valid: {', '.join(LIMITS)})")
        for limit in limits:
            _check_limit(rule, limit)  # a bad limit fails before any report is built
    report = build_report(store, thresholds=base)
    con = connect(store)
    try:
        ctx = _context(con, base)
        found = _episodes(ctx, report)
        rows = []
        for rule, limits in grid.items():
            unit = LIMITS[rule][2]
            for limit in limits:
                # the rule itself with this limit, on the report's incidents; what ctx caches
                # (attempts, down intervals) does not depend on escalation limits
                ctx.thresholds = with_limit(base, rule, limit)
                esc = ESCALATIONS[rule](ctx, report.incidents, report.window_end)
                fired = None if esc.breached is None else fire_count(found, rule, limit)
                rows.append((rule, float(limit), unit, float(limit) == current_limit(base, rule), fired,
                             esc.breached, esc.value))
    finally:
        con.close()
    return pl.DataFrame(rows, schema=BACKTEST_SCHEMA, orient="row")
