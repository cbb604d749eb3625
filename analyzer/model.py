"""The report's data: :class:`Evidence`, :class:`Incident`, :class:`Escalation`, :class:`Report`.

``Report.to_json()`` is the contract of design.md ("Incident report"): ``format``, ``version``,
``window``, ``counts``, ``incidents``, ``escalations``, ``escalate``, plus two extra keys:
``unclassified`` (error-level records no rule explains, grouped, with counts) and ``notes``
(what the analyzer could not do or had to assume, e.g. records without a time).
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field

FORMAT = "rt-blackbox-report"
VERSION = 1
MAX_EVIDENCE = 20  # evidence rows printed per incident; `count` and `evidence_omitted` tell the rest

CAUSES = (
    "payload_missing",
    "invalid_payload",
    "payload_too_large",
    "network",
    "subscription_race",
    "subscription_failure",
    "rls",
    "auth",
    "db_connectivity",
)


def iso(ts: dt.datetime | None) -> str | None:
    """UTC ISO 8601 with Z; fraction only as long as needed (none, milliseconds or microseconds)."""
    if ts is None:
        return None
    ts = ts.astimezone(dt.UTC)
    if ts.microsecond == 0:
        spec = "seconds"
    elif ts.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return ts.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


@dataclass(frozen=True)
class Evidence:
    """One row that proves an incident: a log record (``offset``) or a frame (``seq``)."""

    table: str  # "logs", "frames", or "writes" (a --writes file of expected changes)
    source: str | None
    ts: dt.datetime | None
    text: str
    offset: int | None = None
    seq: int | None = None
    session_id: str | None = None
    file_id: str | None = None  # with offset, the identity of a log record (not printed)

    @property
    def key(self) -> tuple:
        if self.table == "frames":
            return ("frames", self.session_id, self.seq)
        return (self.table, self.file_id, self.offset)

    def to_json(self) -> dict:
        obj: dict = {"table": self.table, "source": self.source, "ts": iso(self.ts)}
        if self.table == "frames":
            obj["seq"] = self.seq
            obj["session_id"] = self.session_id
        else:
            obj["offset"] = self.offset
        obj["text"] = self.text
        return obj


def evidence_key(row: dict) -> tuple:
    """``evidence_from_row(row).key`` without making the Evidence."""
    if row["table"] == "frames":
        return ("frames", row.get("session_id"), row.get("seq"))
    return (row["table"], row.get("file_id"), row.get("offset"))


def evidence_from_row(row: dict) -> Evidence:
    """An :class:`Evidence` from a query row with the columns of ``rule_signals.sql``."""
    text = row.get("text") or ""
    if len(text) > 500:
        text = text[:499] + "…"
    return Evidence(
        table=row["table"],
        source=row.get("source"),
        ts=row.get("ts"),
        text=text,
        offset=row.get("offset"),
        seq=row.get("seq"),
        session_id=row.get("session_id"),
        file_id=row.get("file_id"),
    )


@dataclass
class Incident:
    """One incident of one cause: when, how often, which topics, why, and the rows behind it.

    ``rows`` are the query rows that prove it (see :func:`evidence_from_row`); ``evidence``
    makes them :class:`Evidence`, once each, on first use: a burst of 100,000 invalid frames is
    one incident, and its report prints 20 of them.
    """

    cause: str
    detail: str
    start: dt.datetime | None
    end: dt.datetime | None
    count: int
    summary: str
    topics: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list, repr=False, compare=False)
    id: str = ""
    _evidence: list[Evidence] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def evidence(self) -> list[Evidence]:
        """Every row that proves the incident, once each, in the order the rule gave them."""
        if self._evidence is None:
            self._evidence = [evidence_from_row(r) for r in self._unique_rows()]
            self.rows = []
        return self._evidence

    @property
    def evidence_count(self) -> int:
        return len(self._evidence) if self._evidence is not None else len(self._unique_rows())

    def _unique_rows(self) -> list[dict]:
        first: dict[tuple, dict] = {}
        for r in self.rows:
            first.setdefault(evidence_key(r), r)
        return list(first.values())

    def _shown(self) -> tuple[list[Evidence], int]:
        """The first MAX_EVIDENCE evidence rows in time order, and how many there are in all."""
        if self._evidence is not None:
            return sorted(self._evidence, key=_evidence_order)[:MAX_EVIDENCE], len(self._evidence)
        unique = self._unique_rows()
        first = heapq.nsmallest(MAX_EVIDENCE, unique, key=_row_order)  # = sorted(...)[:n], stable
        return [evidence_from_row(r) for r in first], len(unique)

    def to_json(self) -> dict:
        shown, total = self._shown()
        obj = {
            "id": self.id,
            "cause": self.cause,
            "detail": self.detail,
            "start": iso(self.start),
            "end": iso(self.end),
            "count": self.count,
            "topics": sorted(self.topics),
            "summary": self.summary,
            "evidence": [e.to_json() for e in shown],
        }
        if total > MAX_EVIDENCE:
            obj["evidence_omitted"] = total - MAX_EVIDENCE
        return obj


_NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


def _evidence_order(e: Evidence) -> tuple:
    return (e.ts is None, e.ts or _NO_TIME, e.table, e.source or "", e.offset or 0, e.seq or 0)


def _row_order(row: dict) -> tuple:
    """``_evidence_order(evidence_from_row(row))``."""
    ts = row.get("ts")
    return (ts is None, ts or _NO_TIME, row["table"], row.get("source") or "", row.get("offset") or 0, row.get("seq") or 0)


@dataclass
class Escalation:
    """One escalation rule evaluated: ``breached`` True/False, or None with ``reason`` when it could not be."""

    rule: str
    breached: bool | None
    value: float | None
    limit: float
    unit: str
    since: dt.datetime | None = None
    reason: str | None = None
    incidents: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        obj = {
            "rule": self.rule,
            "breached": self.breached,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "since": iso(self.since),
        }
        if self.reason is not None:
            obj["reason"] = self.reason
        obj["incidents"] = list(self.incidents)
        return obj


@dataclass
class Unclassified:
    """Error-level records that no rule explains, grouped by source and message pattern."""

    source: str | None
    level: str | None
    text: str
    count: int
    first: dt.datetime | None
    last: dt.datetime | None
    evidence: list[Evidence] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "level": self.level,
            "text": self.text,
            "count": self.count,
            "first": iso(self.first),
            "last": iso(self.last),
            "evidence": [e.to_json() for e in self.evidence[:3]],
        }


@dataclass
class Report:
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    counts: dict[str, int]
    incidents: list[Incident]
    escalations: list[Escalation]
    unclassified: list[Unclassified] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    series: dict = field(default_factory=dict)  # per-bucket traffic for charts (html), not in JSON

    @property
    def escalate(self) -> bool:
        return any(e.breached for e in self.escalations)

    @property
    def breached(self) -> list[Escalation]:
        return [e for e in self.escalations if e.breached]

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "window": {"start": iso(self.window_start), "end": iso(self.window_end)},
            "counts": dict(self.counts),
            "incidents": [i.to_json() for i in self.incidents],
            "escalations": [e.to_json() for e in self.escalations],
            "escalate": self.escalate,
            "unclassified": [u.to_json() for u in self.unclassified],
            "notes": list(self.notes),
        }
