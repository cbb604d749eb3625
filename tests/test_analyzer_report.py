"""rt-analyze report: rules, escalation thresholds, renderers and the command, on real stores.

Stores come from three places: the labelled scenario recordings of fixtures/scenarios (the
official client through the recording proxy against the mock server), the incident day of
fixtures/logs, and small builders writing rows through recorder.store.StoreWriter for exact
boundaries (realtime_down for 9m59s vs 10m01s needs no ten minutes of wall time).
"""

from __future__ import annotations

import datetime as dt
import html.parser
import http.server
import json
import threading
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - pa.parquet
import pytest

from analyzer.cli import main
from analyzer.db import connect
from analyzer.model import MAX_EVIDENCE
from analyzer.report import build_report, pin_window
from analyzer.thresholds import Thresholds, load_thresholds, thresholds_from_dict
from recorder.errors import ConfigError, InputError
from recorder.logfiles import record_logs
from recorder.store import FRAMES_SCHEMA, LOGS_SCHEMA, StoreWriter

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "fixtures" / "scenarios"
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)
TOPIC = "realtime:public:orders"


# ---- builders ---------------------------------------------------------------------------------


class StoreBuilder:
    """Frames and log rows with sensible defaults; ``write()`` commits them to a real store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames: list[dict] = []
        self.logs: list[dict] = []
        self.seq: dict[str, int] = {}
        self.offsets: dict[str, int] = {}

    def frame(self, at: float, direction: str = "in", event: str | None = None, payload=None, *, session: str = "s1",
              kind: str = "text", topic: str | None = TOPIC, ref: str | None = None, join_ref: str | None = None,
              close_code: int | None = None) -> None:
        seq = self.seq.get(session, 0)
        self.seq[session] = seq + 1
        text = payload if isinstance(payload, str) or payload is None else json.dumps(payload)
        raw = None if kind in ("open", "close", "error") else json.dumps(
            {"event": event, "payload": json.loads(text) if text else {}, "ref": ref, "topic": topic}).encode()
        self.frames.append({
            "ts": T0 + dt.timedelta(seconds=at), "session_id": session, "seq": seq, "direction": direction,
            "kind": kind, "vsn": "1.0.0", "topic": topic if kind in ("text", "binary") else None,
            "event": event, "ref": ref, "join_ref": join_ref, "payload": text,
            "payload_bytes": len(raw or b""), "raw": raw, "close_code": close_code, "decode_error": None,
            "source": "proxy",
        })

    def session(self, at: float, session: str, *, closed_at: float | None = None, code: int = 1006, by: str = "network") -> None:
        self.frame(at, "out", kind="open", session=session, payload={"url": "ws://x/realtime/v1/websocket"})
        self.join(at + 0.01, session=session)
        if closed_at is not None:
            self.frame(closed_at, "in", kind="close", session=session, close_code=code,
                       payload={"code": code, "reason": "", "by": by})

    def join(self, at: float, *, session: str = "s1", status: str = "ok", reason: str | None = None,
             ref: str | None = None, reply_after: float | None = 0.05) -> None:
        ref = ref or str(self.seq.get(session, 0) + 1)
        self.frame(at, "out", "phx_join", {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "orders"}]}},
                   session=session, ref=ref, join_ref=ref)
        if reply_after is not None:
            response = {"postgres_changes": [{"event": "*", "id": 1, "schema": "public", "table": "orders"}]} \
                if status == "ok" else {"reason": reason}
            self.frame(at + reply_after, "in", "phx_reply", {"response": response, "status": status}, session=session, ref=ref)

    def change(self, at: float, *, record: dict | None = None, type: str = "INSERT", errors=None, session: str = "s1",
               commit_timestamp: str | None = "2026-11-24T08:00:00.000Z") -> None:
        data = {"columns": [], "commit_timestamp": commit_timestamp, "errors": errors,
                "record": {"id": 1} if record is None else record, "schema": "public", "table": "orders", "type": type}
        if type != "INSERT":
            data["old_record"] = {"id": 1}
        self.frame(at, "in", "postgres_changes", {"data": data, "ids": [1]}, session=session)

    def log(self, at: float | None, message: str, *, source: str = "bot", level: str = "info",
            logger: str = "bot.main", error_code: str | None = None) -> None:
        offset = self.offsets.get(source, 0)
        self.offsets[source] = offset + len(message) + 40
        self.logs.append({
            "ts": None if at is None else T0 + dt.timedelta(seconds=at), "source": source, "file": f"{source}.log",
            "file_id": f"dev-ino-{source}", "offset": offset, "level": level, "logger": logger, "message": message,
            "error_code": error_code, "project": None, "raw": message, "parsed": True,
        })

    def write(self) -> Path:
        with StoreWriter(self.path, writer="test") as w:
            if self.frames:
                w.append("frames", pa.Table.from_pylist(self.frames, schema=FRAMES_SCHEMA))
            if self.logs:
                w.append("logs", pa.Table.from_pylist(self.logs, schema=LOGS_SCHEMA))
        return self.path


@pytest.fixture
def builder(tmp_path) -> StoreBuilder:
    return StoreBuilder(tmp_path / "store")


def incidents_of(report) -> list[tuple]:
    return [(i.cause, i.detail, i.count) for i in report.incidents]


def escalation(report, rule: str):
    return next(e for e in report.escalations if e.rule == rule)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(map(str, args)))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# ---- labelled scenarios: the official client through the proxy against the mock server --------


SCENARIO_DIRS = sorted(p.parent for p in SCENARIOS.glob("*/expected.json"))


@pytest.mark.parametrize("scenario", SCENARIO_DIRS, ids=[p.name for p in SCENARIO_DIRS])
def test_scenario_incidents_and_escalations(scenario):
    expected = json.loads((scenario / "expected.json").read_text())
    report = build_report(scenario / "store")
    got = Counter((i.cause, i.detail, i.count, tuple(sorted(i.topics))) for i in report.incidents)
    want = Counter((e["cause"], e["detail"], e["count"], tuple(e["topics"])) for e in expected["incidents"])
    assert got == want
    for label in expected["incidents"]:
        inc = next(i for i in report.incidents if (i.cause, i.detail) == (label["cause"], label["detail"]))
        after, before = dt.datetime.fromisoformat(label["after"]), dt.datetime.fromisoformat(label["before"])
        assert after <= inc.start <= inc.end <= before
        assert inc.evidence, "every incident names its rows"
    for rule, breached in expected["escalations"].items():
        assert escalation(report, rule).breached is breached, rule
    assert report.unclassified == []


def test_scenario_evidence_rows_are_exact():
    report = build_report(SCENARIOS / "payload_missing_null" / "store")
    (inc,) = report.incidents
    rows = [(e["table"], e["source"], e["text"]) for e in inc.to_json()["evidence"]]
    assert rows == [
        ("logs", "bot", "sent broadcast event=new_message topic=room1 payload=NULL"),
        ("logs", "server", "UnableToBroadcastChanges: :payload_missing"),
        ("logs", "bot", "sent broadcast event=new_message topic=room1 payload=NULL"),
        ("logs", "server", "UnableToBroadcastChanges: :payload_missing"),
    ]
    assert "NULL payload" in inc.summary


# ---- the incident day of fixtures/logs (logs only) ---------------------------------------------


@pytest.fixture(scope="module")
def incident_day(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("day") / "store"
    logs = ROOT / "fixtures" / "logs"
    quiet = {"say": lambda msg: None}
    record_logs([str(logs / f) for f in ("realtime.log", "bot.log", "notification.log")], str(store), tz="UTC", **quiet)
    record_logs([str(logs / "server.log")], str(store), preset="realtime-server", date="2026-11-24", **quiet)
    record_logs([str(logs / "realtime_logs_export.json")], str(store), source="supabase", **quiet)
    return store


def test_incident_day_report(incident_day):
    j = build_report(incident_day).to_json()
    got = [(i["cause"], i["detail"], i["start"], i["end"], i["count"]) for i in j["incidents"]]
    assert got == [
        ("payload_missing", "foreign_table_in_publication", "2026-11-24T08:12:40.617Z", "2026-11-24T08:12:59.092Z", 2),
        ("network", "abnormal_close", "2026-11-24T08:14:37.905Z", "2026-11-24T08:14:37.905Z", 1),
        ("rls", "column_privilege", "2026-11-24T08:21:09.447Z", "2026-11-24T08:21:09.447Z", 1),
        ("invalid_payload", "empty_record", "2026-11-24T08:26:31.209Z", "2026-11-24T08:26:31.209Z", 1),
        ("network", "abnormal_close", "2026-11-24T08:33:16.870Z", "2026-11-24T08:33:16.870Z", 1),
        ("subscription_failure", "rate_limit", "2026-11-24T08:33:17.006Z", "2026-11-24T08:33:59.038Z", 2),
        ("rls", "channel_unauthorized", "2026-11-24T08:33:47.035Z", "2026-11-24T08:33:47.035Z", 1),
        ("db_connectivity", "unreachable", "2026-11-24T08:41:02.114Z", "2026-11-24T08:41:32.610Z", 3),
        ("network", "client_gave_up", "2026-11-24T08:45:12.330Z", "2026-11-24T08:55:30.215Z", 6),
    ]
    esc = {e["rule"]: (e["breached"], e["value"], e["since"]) for e in j["escalations"]}
    assert esc == {
        "realtime_down": (True, 1022.717, "2026-11-24T08:45:12.330Z"),
        "subscription_failures": (True, 3.0, "2026-11-24T08:33:17.006Z"),
        "db_connectivity": (False, 62.571, "2026-11-24T08:41:00.179Z"),
        "payload_error_rate": (None, None, None),
    }
    assert j["escalate"] is True
    # the export repeats the server's lines: counted once, the copies never unclassified
    assert [(u["source"], u["count"], u["text"]) for u in j["unclassified"]] == [
        ("bot", 1, "error while handling postgres_changes for public.orders"),
        ("notification", 1, "delivery to admin 60919342 failed, will retry in 60 s"),
    ]
    first = j["incidents"][0]["evidence"]
    assert [(e["source"], e["ts"], e["offset"], e["text"]) for e in first[:4]] == [
        ("bot", "2026-11-24T08:12:40.402Z", 4163, "inserted order 4711 into public.orders (customer 205, total 64.00)"),
        ("server", "2026-11-24T08:12:40.617Z", 1474, "UnableToBroadcastChanges: :payload_missing"),
        ("bot", "2026-11-24T08:12:58.877Z", 4276, "inserted order 4712 into public.orders (customer 91, total 19.99)"),
        ("server", "2026-11-24T08:12:59.092Z", 1620, "UnableToBroadcastChanges: :payload_missing"),
    ]


def test_incident_day_status(incident_day, capsys):
    code, out, _ = run_cli(capsys, "status", "--store", incident_day, "--until", "2026-11-24T08:50:00Z", "--format", "json")
    assert code == 0
    status = json.loads(out)
    assert status["connection"] == {"connected": False, "since": "2026-11-24T08:45:12.330Z", "from": "logs",
                                    "evidence": "WebSocket connection closed with code: 1006, reason: "}
    assert status["channels"] == [{"topic": TOPIC, "state": "errored", "since": "2026-11-24T08:45:12.331Z", "from": "logs"}]
    assert status["fallback"]["polling"] is True
    assert status["fallback"]["since"] == "2026-11-24T08:46:00.118Z"
    assert status["last_heartbeat"] is None


# ---- escalation boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize(("down_s", "breached"), [(599, False), (601, True)])
def test_realtime_down_boundary(builder, down_s, breached):
    builder.session(0, "s1", closed_at=60)
    builder.session(60 + down_s, "s2")
    report = build_report(builder.write())
    esc = escalation(report, "realtime_down")
    assert (esc.breached, esc.value, esc.since) == (breached, float(down_s) - 0.0, T0 + dt.timedelta(seconds=60))
    assert report.escalate is breached


def test_realtime_down_still_down_at_the_end(builder):
    builder.session(0, "s1", closed_at=10)
    builder.log(700, "health check: realtime=disconnected subscription=CHANNEL_ERROR db=ok polling=on", logger="bot.health")
    esc = escalation(build_report(builder.write()), "realtime_down")
    assert (esc.breached, esc.value) == (True, 690.0)
    assert "still down" in esc.reason


@pytest.mark.parametrize(("failures", "breached"), [(2, False), (3, True)])
def test_subscription_failures_boundary(builder, failures, breached):
    builder.frame(0, "out", kind="open", topic=None, payload={"url": "ws://x"})
    for n in range(failures):
        builder.join(1 + n * 5, status="error", reason="ClientJoinRateLimitReached: Too many joins per second")
    builder.join(1 + failures * 5)
    report = build_report(builder.write())
    esc = escalation(report, "subscription_failures")
    assert (esc.breached, esc.value) == (breached, float(failures))
    assert incidents_of(report) == [("subscription_failure", "rate_limit", failures)]
    assert esc.incidents == ["inc-1"]


@pytest.mark.parametrize(("seconds", "breached"), [(299, False), (301, True)])
def test_db_connectivity_boundary(builder, seconds, breached):
    builder.log(0, "database connectivity error on insert into public.orders: {'code': 'PGRST001'}", level="error", logger="bot.db")
    builder.log(seconds / 2, "database connectivity error on insert into public.orders: {'code': 'PGRST001'}", level="error", logger="bot.db")
    builder.log(seconds, "to admins: database reachable again after a while", source="notification")
    esc = escalation(build_report(builder.write()), "db_connectivity")
    assert (esc.breached, esc.value) == (breached, float(seconds))


@pytest.mark.parametrize(("invalid", "events", "breached"), [(5, 100, False), (6, 100, True), (19, 19, False)])
def test_payload_error_rate_boundary(builder, invalid, events, breached):
    builder.frame(0, "out", kind="open", topic=None, payload={"url": "ws://x"})
    for n in range(events):
        builder.change(1 + n, record={} if n >= events - invalid else {"id": n})  # the invalid ones last
    report = build_report(builder.write())
    esc = escalation(report, "payload_error_rate")
    assert esc.breached is breached
    assert esc.value == round(invalid / events, 6)
    assert report.counts == {"frames": events + 1, "log_records": 0, "postgres_changes": events, "invalid_payloads": invalid}


def test_thresholds_change_the_verdict(builder, tmp_path):
    builder.session(0, "s1", closed_at=60)
    builder.session(120, "s2")
    toml = tmp_path / "t.toml"
    toml.write_text('[realtime_down]\nfor = "30s"\n')
    esc = escalation(build_report(builder.write(), thresholds=load_thresholds(toml)), "realtime_down")
    assert (esc.breached, esc.limit) == (True, 30.0)


# ---- invalid_payload details, with and without the validator's verdicts ------------------------


@pytest.mark.parametrize("with_verdicts", [False, True], ids=["own check", "verdicts"])
@pytest.mark.parametrize(("record", "type_", "detail"), [
    ({}, "UPDATE", "empty_record"),
    (None, "INSERT", "null_record"),
    ("x", "INSERT", "wrong_type"),
])
def test_invalid_payload_detail_is_the_kind_of_invalidity(builder, with_verdicts, record, type_, detail):
    from analyzer.validate import validate_store

    builder.frame(0, "out", kind="open", topic=None, payload={"url": "ws://x"})
    for n in range(3):
        builder.change(1 + n, type=type_, record={"id": n})
        builder.frames[-1]["payload"] = builder.frames[-1]["payload"].replace(f'"record": {{"id": {n}}}', f'"record": {json.dumps(record)}')
    store = builder.write()
    if with_verdicts:
        assert validate_store(store).invalid == 3
        kinds = {"empty_record": "empty", "null_record": "null", "wrong_type": "wrong_type"}
        con = connect(store)
        try:
            assert con.execute("SELECT DISTINCT error_path, error_kind FROM verdicts WHERE NOT valid").fetchall() == [
                ("/data/record", kinds[detail])]
            assert con.execute("SELECT DISTINCT from_validator, kind FROM changes").fetchall() == [(True, detail)]
        finally:
            con.close()
    assert incidents_of(build_report(store)) == [("invalid_payload", detail, 3)]


def test_verdicts_without_error_kind_still_read(builder):
    """A verdicts file written before error_kind existed: the view reads it as NULL."""
    builder.change(1, type="UPDATE", record={})
    store = builder.write()
    (store / "verdicts").mkdir()
    seq = builder.frames[-1]["seq"]
    pa.parquet.write_table(pa.table({"session_id": ["s1"], "seq": [seq], "valid": [False],
                                     "error_path": ["/data/record"], "error": ["empty object"]}),
                           store / "verdicts" / "verdicts.parquet")
    con = connect(store)
    try:
        (error_kind, kind), = con.execute("SELECT error_kind, kind FROM verdicts JOIN changes USING (session_id, seq)").fetchall()
    finally:
        con.close()
    assert error_kind is None and kind is not None  # the kind then comes from the verdict's text
    assert [i.cause for i in build_report(store).incidents] == ["invalid_payload"]


def test_undecodable_frames_are_worded_without_a_topic(builder):
    builder.frame(0, "out", kind="open", topic=None, payload={"url": "ws://x"})
    builder.frame(1, "in", topic=None, payload=None)
    builder.frames[-1].update(event=None, decode_error="invalid JSON at byte 3", raw=b"[1,")
    (inc,) = build_report(builder.write()).incidents
    assert (inc.cause, inc.detail, inc.topics) == ("invalid_payload", "undecodable", [])
    assert "None" not in inc.summary
    assert inc.summary.startswith("1 frame that could not be decoded (so no topic is known) failed the payload check")


def test_rule_caches_belong_to_their_context(builder):
    """Nothing a report computes is kept at module level: a second context starts empty."""
    import analyzer.rules as rules
    from analyzer.rules import Context

    builder.session(0, "s1")
    builder.log(0.2, f"subscription state SUBSCRIBED for {TOPIC}")  # matched to the join: the attempt index is used
    store = builder.write()

    def module_state():
        return {name: repr(value) for name, value in vars(rules).items() if isinstance(value, (dict, list, set))}

    before = module_state()
    build_report(store)
    assert module_state() == before
    contexts = []
    for _ in range(2):
        con = connect(store)
        pin_window(con, None, None, Thresholds())
        ctx = Context(con, Thresholds())
        rules.subscription_attempts(ctx)
        contexts.append(ctx)
    first, second = contexts
    assert first.query("rule_channel_frames") == second.query("rule_channel_frames")
    rows = first.query("rule_channel_frames")
    rows[0]["topic"] = "changed by a rule"
    assert first.query("rule_channel_frames")[0]["topic"] != "changed by a rule"
    assert first._memo is not second._memo
    for ctx in contexts:
        ctx.con.close()


# ---- payload_missing details from builders -----------------------------------------------------

SERVER_ERROR = "UnableToBroadcastChanges: :payload_missing"


def _server(builder, at):
    builder.log(at, SERVER_ERROR, source="server", level="error", logger="realtime-server", error_code="UnableToBroadcastChanges")


def test_payload_missing_json_null_on_affected_version(builder):
    builder.log(0, "sent broadcast event=new_order topic=orders payload=null")
    _server(builder, 0.2)
    report = build_report(builder.write(), thresholds=thresholds_from_dict({"analysis": {"server_version": "2.44.0"}}))
    assert incidents_of(report) == [("payload_missing", "json_null_payload", 1)]
    assert "v2.44.0 is affected" in report.incidents[0].summary


def test_payload_missing_json_null_on_fixed_version_is_not_json_null(builder):
    builder.log(0, "sent broadcast event=new_order topic=orders payload=null")
    _server(builder, 0.2)
    report = build_report(builder.write(), thresholds=thresholds_from_dict({"analysis": {"server_version": "2.70.0"}}))
    assert incidents_of(report) == [("payload_missing", "null_payload", 1)]


def test_payload_missing_unknown_and_bursts(builder):
    _server(builder, 0)
    _server(builder, 30)
    _server(builder, 1000)  # a second burst, far from the first
    report = build_report(builder.write())
    assert incidents_of(report) == [("payload_missing", "unknown", 2), ("payload_missing", "unknown", 1)]


def test_payload_missing_pairs_each_error_with_its_own_write(builder):
    """Five writes, then five errors after the last: every error takes the nearest write no earlier
    error took, down to the first write (more candidates than the rule fetches at first)."""
    for k in range(5):
        builder.log(k, f"inserted todo {900 + k} into public.todos (call back)")
    for k in range(5):
        _server(builder, 4.1 + k / 10)
    (inc,) = build_report(builder.write()).incidents
    assert (inc.cause, inc.count) == ("payload_missing", 5)
    writes = [e.text for e in inc.evidence if e.source == "bot"]
    assert sorted(writes) == [f"inserted todo {900 + k} into public.todos (call back)" for k in range(5)]
    assert "public.todos" in inc.summary


def test_payload_missing_sibling_atom(builder):
    builder.log(0, "UnableToBroadcastChanges: :payload_size_exceeded", source="server", level="error",
                error_code="UnableToBroadcastChanges")
    assert incidents_of(build_report(builder.write())) == [("payload_missing", "payload_size_exceeded", 1)]


def test_missed_events_from_a_writes_file(builder, tmp_path):
    builder.session(0, "s1")
    builder.change(5, record={"id": 1})
    writes = tmp_path / "writes.jsonl"
    writes.write_text(
        '{"ts": "2026-11-24T08:00:04Z", "table": "public.orders", "type": "INSERT", "id": 1}\n'
        '{"ts": "2026-11-24T08:00:20Z", "table": "orders", "type": "INSERT", "id": 2}\n'
    )
    report = build_report(builder.write(), writes=writes)
    assert incidents_of(report) == [("rls", "events_filtered", 1)]
    assert report.incidents[0].to_json()["evidence"] == [
        {"table": "writes", "source": str(writes), "ts": "2026-11-24T08:00:20Z", "offset": 2,
         "text": "expected INSERT on public.orders id=2"}]


# ---- bad input ---------------------------------------------------------------------------------


def test_empty_store(tmp_path, capsys):
    StoreWriter(tmp_path / "store").close()
    code, out, _ = run_cli(capsys, "report", "--store", tmp_path / "store", "--format", "json")
    j = json.loads(out)
    assert code == 0
    assert j["counts"] == {"frames": 0, "log_records": 0, "postgres_changes": 0, "invalid_payloads": 0}
    assert j["window"] == {"start": None, "end": None}
    assert j["incidents"] == [] and j["escalate"] is False
    assert {e["rule"]: e["breached"] for e in j["escalations"]} == {
        "realtime_down": None, "subscription_failures": None, "db_connectivity": None, "payload_error_rate": None}
    assert all(e["reason"].startswith("not evaluated") for e in j["escalations"])


def test_frames_only_and_logs_only(builder, tmp_path):
    builder.session(0, "s1", closed_at=5, code=1011, by="server")
    builder.session(6, "s2")
    report = build_report(builder.write())
    assert incidents_of(report) == [("network", "abnormal_close", 1)]
    assert escalation(report, "db_connectivity").breached is None
    logs_only = StoreBuilder(tmp_path / "logs-only")
    logs_only.log(0, "WebSocket connection closed with code: 1006, reason: ", source="realtime", level="error",
                  logger="realtime._async.client")
    report = build_report(logs_only.write())
    assert incidents_of(report) == [("network", "abnormal_close", 1)]
    assert escalation(report, "payload_error_rate").breached is None
    assert "no frames recorded" in report.notes[0]


def test_records_without_time_are_counted_and_listed(builder):
    builder.log(0, "started")
    builder.log(None, "something broke", level="error")
    report = build_report(builder.write())
    assert report.counts["log_records"] == 2
    assert [(u.text, u.count, u.first) for u in report.unclassified] == [("something broke", 1, None)]
    assert any("1 log record(s) have no time" in n for n in report.notes)


def test_clock_skew_between_files_is_tolerated_and_said(builder):
    builder.session(0, "s1", closed_at=100, code=1006)
    builder.session(101, "s2")
    # the client's log runs 40 s ahead of the proxy's clock
    builder.log(140, "WebSocket connection closed with code: 1006, reason: ", source="realtime", level="error",
                logger="realtime._async.client")
    report = build_report(builder.write())
    assert any("realtime logs seem 40.0 s ahead of the frames" in n for n in report.notes)
    assert [i.cause for i in report.incidents] == ["network"]
    assert report.unclassified == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[realtime_down]\nfro = "10m"\n', "unknown key realtime_down.fro (valid keys of [realtime_down]: for)"),
        ('[realtime_dwn]\nfor = "10m"\n', "unknown table [realtime_dwn] (valid: realtime_down, subscription_failures,"),
        ('[payload_error_rate]\nwindow = "5 minutes"\n', "payload_error_rate.window: '5 minutes' is not a duration"),
        ('[subscription_failures]\nconsecutive = 0\n', "subscription_failures.consecutive: 0 is not a whole number >= 1"),
        ('[payload_error_rate]\nrate = 5\n', "payload_error_rate.rate: 5 is not a rate between 0 and 1"),
        ("realtime_down = [\n", "not valid TOML"),
    ],
)
def test_bad_thresholds_file(tmp_path, capsys, builder, content, message):
    store = builder.write()
    toml = tmp_path / "t.toml"
    toml.write_text(content)
    code, out, err = run_cli(capsys, "report", "--store", store, "--thresholds", toml)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1
    with pytest.raises(ConfigError):
        load_thresholds(toml)


def test_since_after_until(builder, capsys):
    store = builder.write()
    code, out, err = run_cli(capsys, "report", "--store", store, "--since", "2026-11-24T09:00Z", "--until", "2026-11-24T08:00Z")
    assert (code, out) == (2, "")
    assert err == "rt-analyze: error: --since 2026-11-24T09:00Z is not before --until 2026-11-24T08:00Z\n"
    code, _, err = run_cli(capsys, "report", "--store", store, "--since", "yesterday")
    assert (code, err) == (2, "rt-analyze: error: --since 'yesterday' is not an ISO 8601 time (e.g. 2026-11-24T08:00:00Z)\n")
    with pytest.raises(InputError, match="is not before"):
        build_report(store, since=T0, until=T0)


def test_window_limits_the_report(builder):
    builder.session(0, "s1", closed_at=10, code=1006)
    builder.session(11, "s2", closed_at=3600, code=1006)
    builder.session(3601, "s3")
    since = T0 + dt.timedelta(minutes=30)
    report = build_report(builder.write(), since=since)
    assert [(i.cause, i.start) for i in report.incidents] == [("network", T0 + dt.timedelta(seconds=3600))]
    assert report.window_start == since


def test_durations():
    t = thresholds_from_dict({"realtime_down": {"for": "1h30m"}, "payload_error_rate": {"window": "90s"}})
    assert (t.realtime_down.for_s, t.payload_error_rate.window_s) == (5400.0, 90.0)
    assert Thresholds().realtime_down.for_s == 600.0


# ---- the command and its formats -------------------------------------------------------------


@pytest.fixture
def escalating_store(builder) -> Path:
    builder.session(0, "s1", closed_at=10, code=1006)
    builder.session(700, "s2")
    builder.change(701, record={"id": 1, "note": "<script>alert(1)</script>"}, errors=["Error 413: Payload Too Large"])
    return builder.write()


def test_exit_codes_and_json_contract(escalating_store, builder, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "report", "--store", escalating_store, "--format", "json")
    j = json.loads(out)
    assert code == 1
    assert list(j) == ["format", "version", "window", "counts", "incidents", "escalations", "escalate", "unclassified", "notes"]
    assert (j["format"], j["version"], j["escalate"]) == ("rt-blackbox-report", 1, True)
    assert list(j["incidents"][0]) == ["id", "cause", "detail", "start", "end", "count", "topics", "summary", "evidence"]
    assert list(j["escalations"][0]) == ["rule", "breached", "value", "limit", "unit", "since", "reason", "incidents"]
    calm = StoreBuilder(tmp_path / "calm")
    calm.session(0, "s1")
    code, out, _ = run_cli(capsys, "report", "--store", calm.write())
    assert code == 0 and out.startswith("nothing to escalate: 0 incident(s): no incidents\n")


def test_html_is_self_contained_and_escaped(escalating_store, capsys, tmp_path):
    target = tmp_path / "r.html"
    code, out, _ = run_cli(capsys, "report", "--store", escalating_store, "--format", "html", "--output", target)
    assert (code, out) == (1, "")
    text = target.read_text()

    class Parser(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.data = Counter(), []

        def handle_starttag(self, tag, attrs):
            self.tags[tag] += 1
            for name, value in attrs:
                if name == "xmlns":
                    continue
                assert not (value or "").startswith(("http:", "https:", "//")), (tag, name, value)

        def handle_data(self, data):
            self.data.append(data)

    p = Parser()
    p.feed(text)
    assert p.tags["script"] == 0 and p.tags["svg"] == 1 and p.tags["link"] == 0
    assert "<script>alert(1)</script>" not in text
    assert any("<script>alert(1)</script>" in d for d in p.data)  # shown, as text


def test_markdown_and_text(escalating_store, capsys):
    code, out, _ = run_cli(capsys, "report", "--store", escalating_store, "--format", "markdown")
    assert code == 1 and out.startswith("# Realtime incident report: ESCALATE (realtime_down)")
    assert "| realtime_down | **BREACHED** |" in out
    code, out, _ = run_cli(capsys, "report", "--store", escalating_store)
    assert "\x1b[" not in out  # no colour when stdout is not a terminal
    assert "payload_too_large/record_truncated x1" in out


def test_notify_posts_to_a_webhook(escalating_store, capsys):
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        code, _, _ = run_cli(capsys, "report", "--store", escalating_store, "--notify", url, "--format", "json")
    finally:
        server.shutdown()
    assert code == 1
    ((ctype, message),) = received
    assert ctype == "application/json"
    assert message["text"].startswith(":rotating_light: *ESCALATE (realtime_down)")
    assert message["blocks"][0]["type"] == "section"


def test_notify_not_sent_when_calm(builder, capsys):
    builder.session(0, "s1")
    code, _, err = run_cli(capsys, "report", "--store", builder.write(), "--notify", "http://127.0.0.1:9/never")
    assert (code, err) == (0, "")


def test_stats_and_status_from_frames(builder, capsys):
    builder.session(0, "s1")
    for n in range(4):
        builder.frame(10 + n * 25, "out", "heartbeat", {}, topic="phoenix")
        builder.frame(10 + n * 25 + 0.02 * (n + 1), "in", "phx_reply", {"response": {}, "status": "ok"}, topic="phoenix")
    builder.change(20)
    builder.change(21, record={})
    store = builder.write()
    code, out, _ = run_cli(capsys, "stats", "--store", store, "--format", "json")
    stats = json.loads(out)
    assert code == 0
    assert stats["changes"] == [{"relation": "public.orders", "type": "INSERT", "changes": 2, "invalid": 1}]
    assert stats["payload_error_rate"] == {"invalid": 1, "total": 2, "rate": 0.5}
    assert stats["heartbeat_rtt_ms"] == {"n": 4, "p50": 50.0, "p99": 79.4}
    assert stats["join_latency_ms"] == {"n": 1, "p50": 50.0, "p99": 50.0}
    assert {"topic": TOPIC, "event": "postgres_changes", "direction": "in", "frames": 2} in stats["frames"]
    code, out, _ = run_cli(capsys, "status", "--store", store, "--format", "json")
    status = json.loads(out)
    assert status["connection"]["connected"] is True
    assert status["last_heartbeat"] == {"sent": "2026-11-24T08:01:25Z", "replied": "2026-11-24T08:01:25.080Z", "rtt_ms": 80.0}
    assert status["channels"] == [{"topic": TOPIC, "state": "joined", "since": "2026-11-24T08:00:00.060Z", "from": "frames"}]


def test_evidence_made_on_first_use_reads_as_made_at_once(builder):
    """Incidents keep their query rows and make Evidence when asked: the JSON (first 20 in time
    order, the rest counted) is the same before and after every row became Evidence."""
    for i in range(30):  # one burst of 30 invalid changes, logged twice by the client for some
        builder.change(1 + i * 0.1, record={})
    incidents = build_report(SCENARIOS / "incident_day" / "store").incidents + build_report(builder.write()).incidents
    lazy = [i for i in incidents if i._evidence is None]
    assert any(len(i.rows) > MAX_EVIDENCE for i in lazy), "an incident with more rows than the report prints"
    assert any(len(i.rows) > i.evidence_count for i in lazy), "an incident whose rows name one record twice"
    for inc in lazy:
        before, count = inc.to_json(), inc.evidence_count
        made = inc.evidence
        assert inc.to_json() == before and len(made) == count
        assert len({e.key for e in made}) == len(made)
        assert before.get("evidence_omitted", 0) == max(0, count - MAX_EVIDENCE)
