"""analyzer.backtest on the labelled recordings: fire counts whose answer the scenario fixes.

join_failures refuses 3 joins in a row, join_timeout leaves 2 unanswered; the incident day of
fixtures/logs has outages of 0.214 s, 0.096 s and 1022.717 s (Kong down 08:45:12 to 09:02:15),
3 failed joins in a row at 08:33 and the database unreachable for 62.571 s.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from analyzer.backtest import DEFAULT_GRID, backtest, episodes, fire_count, with_limit
from analyzer.report import build_report
from analyzer.thresholds import Thresholds, thresholds_from_dict
from recorder.errors import ConfigError
from recorder.logfiles import record_logs

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "fixtures" / "scenarios"
LABELLED = (
    "healthy", "network_drop", "client_gave_up", "join_failures", "join_timeout", "bad_payloads",
    "too_large", "rls", "auth_expired", "race", "payload_missing_foreign_table", "payload_missing_null",
)  # fmt: skip
EVERY_EVENT = thresholds_from_dict({"payload_error_rate": {"min_events": 1}})


def scenario(name: str) -> Path:
    return SCENARIOS / name / "store"


def build_incident_day(store: Path) -> Path:
    """fixtures/logs (logs only) recorded into ``store``, as ``make run`` does."""
    logs = ROOT / "fixtures" / "logs"
    quiet = lambda msg: None  # noqa: E731
    record_logs([str(logs / n) for n in ("realtime.log", "bot.log", "notification.log")], str(store), tz="UTC", say=quiet)
    record_logs([str(logs / "server.log")], str(store), preset="realtime-server", date="2026-11-24", say=quiet)
    return store


@pytest.fixture(scope="module")
def incident_day(tmp_path_factory) -> Path:
    return build_incident_day(tmp_path_factory.mktemp("day") / "store")


def column(df: pl.DataFrame, rule: str, name: str) -> list:
    return df.filter(pl.col("rule") == rule)[name].to_list()


def test_join_failures_three_refused_joins_fire_at_three_not_four():
    df = backtest(scenario("join_failures"), {"subscription_failures": [1, 2, 3, 4, 5]})
    assert df.columns == ["rule", "limit", "unit", "configured", "fired", "breached", "value"]
    assert column(df, "subscription_failures", "limit") == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert column(df, "subscription_failures", "fired") == [1, 1, 1, 0, 0]
    assert column(df, "subscription_failures", "breached") == [True, True, True, False, False]
    assert column(df, "subscription_failures", "value") == [3.0] * 5
    assert column(df, "subscription_failures", "configured") == [False, False, True, False, False]
    assert set(df["unit"]) == {"attempts"}


def test_join_timeout_two_unanswered_joins_fire_at_two_not_three():
    df = backtest(scenario("join_timeout"), {"subscription_failures": [2, 3]})
    assert df["fired"].to_list() == [1, 0]
    assert df["breached"].to_list() == [True, False]


def test_episodes_name_the_run_topic_and_reason():
    ep = episodes(scenario("join_failures"))
    runs = ep.filter(pl.col("rule") == "subscription_failures")
    assert runs.select("value", "topic", "detail").rows() == [(3.0, "realtime:public:orders", "tenant")]
    assert runs["start"][0] < runs["end"][0]
    assert ep.filter(pl.col("rule") != "subscription_failures")["value"].max() in (None, 0.0)


def test_incident_day_outage_of_17_minutes_fires_below_its_length_only(incident_day):
    limits = [0.1, 60, 600, 900, 1020, 1022.717, 1800]
    df = backtest(incident_day, {"realtime_down": limits})
    # 0.1 s: the 0.214 s drop at 08:14 and the Kong outage (the 0.096 s drop at 08:33 is shorter)
    assert column(df, "realtime_down", "fired") == [2, 1, 1, 1, 1, 0, 0]
    assert column(df, "realtime_down", "breached") == [True, True, True, True, True, False, False]  # "more than"
    assert column(df, "realtime_down", "value") == [1022.717] * len(limits)
    outages = episodes(incident_day).filter(pl.col("rule") == "realtime_down").sort("value")
    assert outages["value"].to_list() == [0.096, 0.214, 1022.717]
    assert outages["start"][-1] == dt.datetime(2026, 11, 24, 8, 45, 12, 330000, tzinfo=dt.UTC)
    assert outages["end"][-1] == dt.datetime(2026, 11, 24, 9, 2, 15, 47000, tzinfo=dt.UTC)


def test_one_outage_seen_in_frames_and_logs_counts_once():
    # client_gave_up: the 1006 drop is a down interval in the frames and one in the client's log
    outages = episodes(scenario("client_gave_up")).filter(pl.col("rule") == "realtime_down")
    rule = {e.rule: e.value for e in build_report(scenario("client_gave_up")).escalations}
    assert outages.select("value", "detail").rows() == [(rule["realtime_down"], "frames+logs")]
    df = backtest(scenario("client_gave_up"), {"realtime_down": [0.1, 0.16]})
    assert df["fired"].to_list() == [1, 0]


def test_incident_day_every_rule_on_the_default_grid(incident_day):
    df = backtest(incident_day)
    assert df.select("rule", "limit").rows() == [(r, float(v)) for r, vs in DEFAULT_GRID.items() for v in vs]
    assert column(df, "realtime_down", "fired") == [1, 1, 1, 1, 1, 0, 0]  # 1m..15m yes, 20m and 30m no
    assert column(df, "subscription_failures", "fired") == [1, 1, 1, 0, 0]
    assert column(df, "db_connectivity", "fired") == [1, 1, 0, 0, 0, 0]  # 62.571 s: 30 s and 1 min only
    assert column(df, "db_connectivity", "value") == [62.571] * 6
    # logs only: no postgres_changes frames, so the error rate cannot be evaluated
    assert column(df, "payload_error_rate", "fired") == [None] * 6
    assert column(df, "payload_error_rate", "breached") == [None] * 6
    configured = df.filter(pl.col("configured")).select("rule", "limit", "breached").rows()
    assert configured == [("realtime_down", 600.0, True), ("subscription_failures", 3.0, True),
                          ("db_connectivity", 300.0, False), ("payload_error_rate", 0.05, None)]
    report = build_report(incident_day)
    assert [(e.rule, e.breached) for e in report.escalations] == [(r, b) for r, _limit, b in configured]


def test_payload_error_rate_needs_min_events():
    # bad_payloads: 3 changes, all invalid; fewer than the default 20 in any window
    default = backtest(scenario("bad_payloads"), {"payload_error_rate": [0.05, 0.5]})
    assert default["fired"].to_list() == [0, 0]
    assert default["breached"].to_list() == [False, False]
    every = backtest(scenario("bad_payloads"), {"payload_error_rate": [0.05, 0.5, 1.0]}, EVERY_EVENT)
    assert every["fired"].to_list() == [1, 1, 0]  # the rate 1.0 is not above 1.0
    assert every["breached"].to_list() == [True, True, False]
    # rls: 2 changes, the 401 one invalid
    rls = backtest(scenario("rls"), {"payload_error_rate": [0.2, 0.5]}, EVERY_EVENT)
    assert rls["fired"].to_list() == [1, 0]
    assert rls["value"].to_list() == [0.5, 0.5]


def test_rate_windows_above_the_limit_in_a_row_fire_once():
    t0 = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
    values = [0.0, 0.2, 0.3, 0.0, 0.5, 0.1]
    rows = pl.DataFrame(
        {"rule": ["payload_error_rate"] * len(values),
         "end": [t0 + dt.timedelta(seconds=i) for i in range(len(values))], "value": values}
    )  # fmt: skip
    assert fire_count(rows, "payload_error_rate", 0.15) == 2
    assert fire_count(rows, "payload_error_rate", 0.05) == 2
    assert fire_count(rows, "payload_error_rate", 0.4) == 1
    assert fire_count(rows, "payload_error_rate", 0.5) == 0


@pytest.mark.parametrize("name", LABELLED)
def test_fired_agrees_with_the_escalation_rule(name):
    df = backtest(scenario(name), thresholds=EVERY_EVENT)
    evaluated = df.filter(pl.col("breached").is_not_null())
    assert not evaluated.is_empty()
    assert evaluated["breached"].to_list() == (evaluated["fired"] > 0).to_list()
    assert df.filter(pl.col("breached").is_null())["fired"].null_count() == df["breached"].null_count()


@pytest.mark.parametrize("name", ["bad_payloads", "rls", "too_large", "healthy"])
def test_rate_windows_reach_the_rules_worst_window(name):
    worst = {e.rule: e.value for e in build_report(scenario(name), thresholds=EVERY_EVENT).escalations}
    windows = episodes(scenario(name), EVERY_EVENT).filter(pl.col("rule") == "payload_error_rate")
    assert windows["value"].max() == worst["payload_error_rate"]


def test_with_limit_changes_one_rule_only():
    t = with_limit(Thresholds(), "realtime_down", 120)
    assert t.realtime_down.for_s == 120.0
    assert t.subscription_failures == Thresholds().subscription_failures
    assert with_limit(t, "subscription_failures", 4.0).subscription_failures.consecutive == 4


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"realtime_dwn": [60]}, "unknown escalation rule 'realtime_dwn' in the grid (valid: realtime_down, "),
        ({"subscription_failures": [2.5]}, "subscription_failures: limit 2.5 is not a whole number >= 1"),
        ({"payload_error_rate": [5]}, "payload_error_rate: limit 5 is not a rate between 0 and 1"),
        ({"db_connectivity": [-1]}, "db_connectivity: limit -1 is not a number of seconds >= 0"),
    ],
)
def test_bad_grid_is_a_config_error(grid, message):
    with pytest.raises(ConfigError) as err:
        backtest(scenario("healthy"), grid)
    assert str(err.value).startswith(message)
