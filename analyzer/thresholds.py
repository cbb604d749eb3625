"""Escalation thresholds and analysis settings, read from TOML (design.md, "Escalation rules").

Defaults are the runbook's::

    [realtime_down]            # connection failed for more than 10 minutes
    for = "10m"
    [subscription_failures]    # consecutive failed subscription attempts, per topic
    consecutive = 3
    [db_connectivity]          # database problems that persist
    for = "5m"
    [payload_error_rate]       # share of payloads that fail validation
    rate = 0.05
    window = "5m"
    min_events = 20

and one extra table for how evidence is matched (all optional)::

    [analysis]
    match_tolerance = "10s"    # how far apart related records of different files may be (clock skew)
    burst_gap = "2m"           # records of one cause closer than this form one incident
    join_timeout = "10s"       # a join without reply after this long timed out (realtime-py: 10 s)
    server_version = "2.44.0"  # the Realtime server's version, when the logs do not say it

A file may set any subset; an unknown table or key, or a value of the wrong kind, is a
:class:`~recorder.errors.ConfigError` naming the key and what is valid.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from recorder.errors import ConfigError

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_duration(text: object, key: str = "duration") -> float:
    """``"90s"``, ``"10m"``, ``"1h30m"``, ``"250ms"`` (or a number of seconds) -> seconds.

    >>> parse_duration("1h30m")
    5400.0
    """
    if isinstance(text, bool):
        raise ConfigError(f"{key}: {text!r} is not a duration (use e.g. \"90s\", \"10m\", \"1h30m\")")
    if isinstance(text, int | float):
        if text < 0:
            raise ConfigError(f"{key}: {text!r} is negative")
        return float(text)
    if isinstance(text, str):
        m = _DURATION.match(text.strip().lower())
        if m and any(m.groups()):
            h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s + ms / 1000
    raise ConfigError(f"{key}: {text!r} is not a duration (use e.g. \"90s\", \"10m\", \"1h30m\")")


def format_duration(seconds: float) -> str:
    """Seconds as ``1h2m3s`` / ``10m`` / ``0.5s`` (for summaries)."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


@dataclass(frozen=True)
class RealtimeDown:
    for_s: float = 600.0


@dataclass(frozen=True)
class SubscriptionFailures:
    consecutive: int = 3


@dataclass(frozen=True)
class DbConnectivity:
    for_s: float = 300.0


@dataclass(frozen=True)
class PayloadErrorRate:
    rate: float = 0.05
    window_s: float = 300.0
    min_events: int = 20


@dataclass(frozen=True)
class Analysis:
    match_tolerance_s: float = 10.0
    burst_gap_s: float = 120.0
    join_timeout_s: float = 10.0
    server_version: str | None = None


@dataclass(frozen=True)
class Thresholds:
    realtime_down: RealtimeDown = field(default_factory=RealtimeDown)
    subscription_failures: SubscriptionFailures = field(default_factory=SubscriptionFailures)
    db_connectivity: DbConnectivity = field(default_factory=DbConnectivity)
    payload_error_rate: PayloadErrorRate = field(default_factory=PayloadErrorRate)
    analysis: Analysis = field(default_factory=Analysis)


def _duration(v, key):
    return parse_duration(v, key)


def _count(minimum: int):
    def check(v, key):
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{key}: {v!r} is not a whole number >= {minimum}")
        return v

    return check


def _ratio(v, key):
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise ConfigError(f"{key}: {v!r} is not a rate between 0 and 1 (e.g. 0.05)")
    return float(v)


def _version(v, key):
    if not isinstance(v, str) or not re.fullmatch(r"v?\d+\.\d+\.\d+", v):
        raise ConfigError(f"{key}: {v!r} is not a version like \"2.44.0\"")
    return v.lstrip("v")


# table -> key in the file -> (attribute, converter)
SCHEMA: dict[str, dict[str, tuple[str, object]]] = {
    "realtime_down": {"for": ("for_s", _duration)},
    "subscription_failures": {"consecutive": ("consecutive", _count(1))},
    "db_connectivity": {"for": ("for_s", _duration)},
    "payload_error_rate": {
        "rate": ("rate", _ratio),
        "window": ("window_s", _duration),
        "min_events": ("min_events", _count(0)),
    },
    "analysis": {
        "match_tolerance": ("match_tolerance_s", _duration),
        "burst_gap": ("burst_gap_s", _duration),
        "join_timeout": ("join_timeout_s", _duration),
        "server_version": ("server_version", _version),
    },
}


def thresholds_from_dict(data: dict, origin: str = "thresholds") -> Thresholds:
    """Thresholds from parsed TOML; unknown tables/keys and bad values raise ConfigError."""
    defaults = Thresholds()
    parts = {table: getattr(defaults, table) for table in SCHEMA}
    for table, values in data.items():
        if table not in SCHEMA:
            raise ConfigError(f"{origin}: unknown table [{table}] (valid: {', '.join(SCHEMA)})")
        spec = SCHEMA[table]
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: {table} must be a table ([{table}]), got {values!r}")
        changes = {}
        for key, value in values.items():
            if key not in spec:
                raise ConfigError(
                    f"{origin}: unknown key {table}.{key} (valid keys of [{table}]: {', '.join(spec)})"
                )
            attr, convert = spec[key]
            changes[attr] = convert(value, f"{origin}: {table}.{key}")  # type: ignore[operator]
        current = parts[table]
        kwargs = {f.name: getattr(current, f.name) for f in fields(current)}
        kwargs.update(changes)
        parts[table] = type(current)(**kwargs)
    return Thresholds(**parts)


def load_thresholds(path: str | Path | None) -> Thresholds:
    """Read a thresholds TOML file (None: the defaults)."""
    if path is None:
        return Thresholds()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such thresholds file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read thresholds file ({err})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML ({err})") from None
    return thresholds_from_dict(data, str(p))
