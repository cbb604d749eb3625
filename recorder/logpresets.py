"""Log presets: how a block of log text becomes rows of the store's ``logs`` table.

A registry (``PRESETS``) of named presets. Line presets (``python``, ``json``,
``realtime-server``) describe the first line of a record with one anchored regex; the shared
assembler groups continuation lines (tracebacks, pydantic reports, pretty-printed dumps) into
the record before them, vectorised with Polars. Whole-file presets (``supabase-export``) parse
a complete export. Lines no preset matches are kept with ``parsed = false``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa

from recorder.errors import ConfigError
from recorder.redact import redact_expr, redact_text
from recorder.store import LOGS_SCHEMA

DEFAULT_PYTHON_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
MAX_CONTINUATION_LINES = 5000  # a record longer than this starts a new (unparsed) record

LEVELS = {
    "debug": "debug",
    "trace": "debug",
    "info": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "err": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
    "alert": "critical",
    "emergency": "critical",
    "emerg": "critical",
}

# Error codes of realtime-protocol.md §6 (current and historical): a message naming one of
# them as ``Code:`` or ``error_code=Code`` gets it in ``error_code``.
ERROR_CODES = sorted(
    """
    TopicNameRequired InvalidJoinPayload RealtimeDisabledForConfiguration UnableToSubscribeToPostgres
    ReconnectSubscribeToPostgres TenantNotFound MissingAPIKey ErrorConnectingToWebsocket
    RealtimeDisabledForTenant InvalidJWTToken MalformedJWT JwtSignatureError JwtSignerError Unauthorized
    RlsPolicyError PrivateOnly ChannelRateLimitReached ConnectionRateLimitReached ClientJoinRateLimitReached
    JoinsRateLimitReached DatabaseConnectionRateLimitReached MessagePerSecondRateLimitReached
    PresenceRateLimitReached ClientPresenceRateLimitReached IncreaseConnectionPool
    IncreaseSubscriptionConnectionPool DatabaseLackOfConnections UnableToConnectToProject
    UnableToConnectToTenantDatabase InitializingProjectConnection UnableToSetPolicies QueryCanceled
    MissingPartition TimeoutOnRpcCall ErrorOnRpcCall RpcError RealtimeRestarting UnknownErrorOnChannel
    UnableToReplayMessages MusterJoinError ChannelShutdown InvalidPresencePayload UnknownPresenceEvent
    UnableToHandlePresence UnableToHandleBroadcast MalformedWebSocketMessage UnknownErrorOnWebSocketMessage
    UnableToBroadcastChanges WarnSendingBroadcastMessage ErrorSendingBroadcastMessage
    UnexpectedMessageReceived StartReplicationFailed ReplicationMaxWalSendersReached
    ReplicationConnectionTimeout ReplicationConnectionDown ReplicationSlotLagTooHigh ReplicationSlotBeingUsed
    UnableToEncodeJson UnknownErrorOnCounter UnhandledProcessMessage UnknownError DatabaseConnectionIssue
    InvalidJWTExpiration ConnectionInitializing ErrorAuthorizingWebsocket UnknownDataProcessed
    ErrorStartingPostgresCDCStream UnableToDeletePhantomSubscriptions UnableToProcessListenPayload
    TableHasSpacesInName UnableToCreateCounter
    """.split(),
    key=len,
    reverse=True,
)
_CODE_ALT = "|".join(ERROR_CODES)
# Only these two forms: a bare word is too often something else ("Error 401: Unauthorized" in a
# frame dump, a list of codes in a notification).
_CODE_RE = rf"\berror_code=(?P<kv>{_CODE_ALT})\b|\b(?P<prefix>{_CODE_ALT}):"
_CODE_RX = re.compile(_CODE_RE)


@dataclass
class Context:
    """Where records come from and what the preset may not guess: zone and date."""

    source: str
    file: str
    file_id: str
    tz: str = "UTC"
    date: str | None = None  # YYYY-MM-DD for server lines without a date
    state: dict = field(default_factory=dict)  # preset state carried across blocks (checkpointed)


@dataclass
class Block:
    """The result of parsing a block: rows and how many bytes of it they account for."""

    table: pa.Table
    consumed: int
    state: dict


# ---- splitting a block into lines ----------------------------------------------------------


def split_lines(block: bytes, eof: bool) -> tuple[pl.Series, np.ndarray]:
    """Split ``block`` into lines without terminators; return them with each line's byte length.

    The byte lengths include the terminator, so offsets are exact whatever the content
    (invalid UTF-8 is replaced with U+FFFD in the text, never in the accounting). A last line
    without a newline is returned only when ``eof``.
    """
    arr = np.frombuffer(block, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    ends = nl + 1
    if eof and len(block) and (len(ends) == 0 or ends[-1] != len(block)):  # nothing at all is no line
        ends = np.append(ends, len(block))
    starts = np.empty(len(ends), dtype=np.int64)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1]
    offs = np.empty(len(ends) + 1, dtype=np.int64)
    offs[0] = 0
    offs[1:] = ends
    lengths = ends - starts
    try:
        arrow = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offs), pa.py_buffer(block))
        arrow.validate(full=True)
        lines = pl.Series("line", arrow, dtype=pl.String)
    except (pa.ArrowInvalid, pl.exceptions.ComputeError):
        lines = pl.Series(
            "line", [block[s:e].decode("utf-8", "replace") for s, e in zip(starts, ends, strict=True)], dtype=pl.String
        )
    lines = lines.str.strip_suffix("\n").str.strip_suffix("\r")
    return lines, lengths


# ---- presets ---------------------------------------------------------------------------------


class Preset:
    """A named way to parse a log file; see the module docstring."""

    name: str = ""
    whole_file = False

    def detect(self, sample: list[str]) -> float:
        """Score in [0, 1] for how well the first lines of a file fit this preset."""
        raise NotImplementedError


class LinePreset(Preset):
    """A preset whose records start with a line matching ``prefix`` (named groups inside)."""

    prefix: str = ""
    stateless = True  # records parse independently of the lines before them

    def __init__(self) -> None:
        self._py = re.compile(self.prefix)
        self._py_bytes = re.compile(self.prefix.encode())

    def record_start_after(self, block: bytes, pos: int, limit: int = 1 << 20) -> int | None:
        """Offset of the first line at or after ``pos`` that starts a record (None if none soon)."""
        start = block.rfind(b"\n", 0, pos) + 1
        end = min(len(block), pos + limit)
        while start < end:
            nl = block.find(b"\n", start)
            if nl < 0:
                return None
            if start >= pos and self._py_bytes.match(block, start):
                return start
            start = nl + 1
        return None

    def detect(self, sample: list[str]) -> float:
        lines = [s for s in sample if s.strip()]
        if not lines:
            return 0.0
        hits = sum(1 for s in lines if self._py.match(s))
        return hits / len(lines) if self._py.match(lines[0]) else hits / len(lines) / 2

    def fields(self, heads: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, dict]:
        """Columns ts, level, logger, error_code, project for record heads; and the new state."""
        raise NotImplementedError

    def message(self) -> pl.Expr:
        """The message part of a head line (default: what follows the matched prefix)."""
        return pl.col("line").str.slice(pl.col("_p").str.len_chars())

    def continuation(self) -> pl.Expr | None:
        """The message part of a continuation line, or None when it is the whole line (default).

        Evaluated over all lines of the block; ``_new`` marks record heads, so values of the
        head can be carried to its continuation lines with a forward fill.
        """
        return None

    def parse(self, block: bytes, base: int, ctx: Context, *, eof: bool, emit_last: bool) -> Block:
        """Parse ``block`` (bytes at file offset ``base``) into ``logs`` rows.

        With ``emit_last`` False the last record is held back (it may continue in the next
        block); ``consumed`` is where the next block must start.
        """
        lines, lengths = split_lines(block, eof)
        if len(lines) == 0:
            return Block(LOGS_SCHEMA.empty_table(), 0, ctx.state)
        offsets = np.empty(len(lengths), dtype=np.int64)
        offsets[0] = 0
        np.cumsum(lengths[:-1], out=offsets[1:])
        df = pl.DataFrame({"line": lines, "off": offsets, "len": lengths})
        df = df.with_columns(pl.col("line").str.extract_groups(self.prefix).alias("_g")).unnest("_g")
        start = pl.col("_p").is_not_null()
        df = df.with_columns(_start=start, _seen=start.cast(pl.Int64).cum_sum())
        df = df.with_columns(_new=pl.col("_start") | (pl.col("_seen") == 0))
        df = df.with_columns(_rec=pl.col("_new").cast(pl.Int64).cum_sum())
        if MAX_CONTINUATION_LINES:
            row = pl.int_range(pl.len(), dtype=pl.Int64)
            pos = row - pl.when(pl.col("_new")).then(row).forward_fill()
            df = df.with_columns(_new=pl.col("_new") | (pos > 0) & (pos % MAX_CONTINUATION_LINES == 0))
            df = df.with_columns(_rec=pl.col("_new").cast(pl.Int64).cum_sum())
        if not emit_last:
            last = df["_rec"][-1]
            df = df.filter(pl.col("_rec") < last)
            if df.height == 0:
                return Block(LOGS_SCHEMA.empty_table(), 0, ctx.state)
        consumed = int(df["off"][-1] + df["len"][-1])
        cont_msg = self.continuation()
        aggs = [pl.col("line").str.join("\n").alias("_cont")]
        if cont_msg is not None:
            df = df.with_columns(_cmsg=cont_msg)
            aggs.append(pl.col("_cmsg").str.join("\n").alias("_cont_msg"))
        cont = df.filter(~pl.col("_new")).group_by("_rec", maintain_order=True).agg(aggs)
        heads = df.filter(pl.col("_new"))
        if cont.height:
            heads = heads.join(cont, on="_rec", how="left")
        else:
            heads = heads.with_columns(_cont=pl.lit(None, dtype=pl.String), _cont_msg=pl.lit(None, dtype=pl.String))
        parsed = pl.col("_start") & (pl.col("_seen") > 0)
        with_cont = pl.col("_cont").is_not_null()
        head_msg = pl.when(parsed).then(self.message()).otherwise(pl.col("line"))
        msg_cont = pl.col("_cont_msg" if cont_msg is not None else "_cont")
        heads = heads.with_columns(
            raw=pl.when(with_cont).then(pl.concat_str([pl.col("line"), pl.lit("\n"), pl.col("_cont")])).otherwise(
                pl.col("line")
            ),
            message=pl.when(with_cont).then(pl.concat_str([head_msg, pl.lit("\n"), msg_cont])).otherwise(head_msg),
            parsed=parsed,
        )
        # Heads that are not record starts (orphans) get no fields; run the preset on starts only.
        fields, state = self.fields(heads, ctx)
        out = assemble(heads.with_columns(fields), ctx, base)
        return Block(out, consumed, state)


def assemble(heads: pl.DataFrame, ctx: Context, base: int) -> pa.Table:
    """Finish rows: normalise level, find error codes, redact, null fields of unparsed rows."""
    parsed = pl.col("parsed")
    found = pl.col("message").str.extract_groups(_CODE_RE)
    code_from_msg = pl.coalesce(found.struct.field("kv"), found.struct.field("prefix"))
    df = heads.select(
        ts=pl.when(parsed).then(pl.col("ts")),
        source=pl.lit(ctx.source, dtype=pl.String),
        file=pl.lit(ctx.file, dtype=pl.String),
        file_id=pl.lit(ctx.file_id, dtype=pl.String),
        offset=(pl.col("off") + base).cast(pl.Int64),
        level=pl.when(parsed).then(pl.col("level").str.to_lowercase().replace_strict(LEVELS, default=None)),
        logger=pl.when(parsed).then(pl.col("logger")),
        message=redact_expr(pl.col("message")),
        error_code=pl.coalesce(pl.when(parsed).then(pl.col("error_code")), code_from_msg),
        project=pl.when(parsed).then(pl.col("project")),
        raw=redact_expr(pl.col("raw")),
        parsed=parsed,
    )
    return df.to_arrow().cast(LOGS_SCHEMA)


def _local_to_utc(expr: pl.Expr, tz: str) -> pl.Expr:
    """Naive local datetimes to UTC; times that do not exist or repeat (DST) become null."""
    return expr.dt.replace_time_zone(tz, ambiguous="null", non_existent="null").dt.convert_time_zone("UTC")


_NULL_STR = pl.lit(None, dtype=pl.String)


# -- python logging --

_FIELD_RX = re.compile(r"%\((?P<name>\w+)\)(?P<flags>[-#0 +]*)(?P<width>\d*)(?:\.\d+)?(?P<conv>[sdfrxXeEgGi])")

_FIELD_PATTERNS = {
    "asctime": r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:[,.]\d{1,6})?",
    "levelname": r"[A-Za-z]+",
    "levelno": r"\d+",
    "name": r"\S+?",
    "module": r"\S+?",
    "filename": r"\S+?",
    "pathname": r"\S+?",
    "funcName": r"\S+?",
    "lineno": r"\d+",
    "process": r"\d+",
    "thread": r"\d+",
    "threadName": r".+?",
    "processName": r".+?",
    "taskName": r".+?",
    "created": r"\d+(?:\.\d+)?",
    "msecs": r"\d+(?:\.\d+)?",
    "relativeCreated": r"\d+(?:\.\d+)?",
}
_RUST_SPECIAL = set("\\.+*?()|[]{}^$#&-~")


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _RUST_SPECIAL else c for c in text)


def compile_logging_format(fmt: str) -> tuple[str, bool]:
    """Compile a ``logging`` format string to an anchored prefix regex.

    Returns ``(regex, message_last)``. When ``%(message)s`` ends the format the regex covers
    everything before the message, whose text is then the rest of the line (no trailing
    ``(.*)$`` group: much faster). Otherwise the message is a lazy group and the rest is
    matched up to the end of the line.

    >>> compile_logging_format("%(levelname)s:%(name)s:%(message)s")[1]
    True
    """
    if "%(message)" not in fmt:
        raise ConfigError(f"--pattern {fmt!r} has no %(message)s field")
    parts: list[str] = []
    seen: set[str] = set()
    pos = 0
    message_last = False
    for m in _FIELD_RX.finditer(fmt):
        parts.append(_escape(fmt[pos : m.start()].replace("%%", "%")))
        name = m.group("name")
        if name == "message":
            if fmt[m.end() :].strip() == "":
                message_last = True
                pos = len(fmt)
                break
            parts.append("(?P<message>.*?)")
        else:
            if name not in _FIELD_PATTERNS:
                known = ", ".join(sorted([*_FIELD_PATTERNS, "message"]))
                raise ConfigError(f"--pattern field %({name}) is not a logging attribute (known: {known})")
            rx = _FIELD_PATTERNS[name]
            group = f"(?P<{name}>{rx})" if name not in seen else f"(?:{rx})"
            seen.add(name)
            if m.group("width"):
                group = f" *{group} *"
            parts.append(group)
        pos = m.end()
    if "%(" in fmt[pos:] and not message_last:
        raise ConfigError(f"--pattern {fmt!r}: cannot read the field at {fmt[pos:]!r}")
    if not message_last:
        parts.append(_escape(fmt[pos:].replace("%%", "%")) + "$")
    body = "".join(parts)
    if not message_last:
        return f"^(?P<_p>{body})", False
    return f"^(?P<_p>{body})", True


class PythonPreset(LinePreset):
    name = "python"

    def __init__(self, fmt: str = DEFAULT_PYTHON_FORMAT) -> None:
        self.fmt = fmt
        self.prefix, self.message_last = compile_logging_format(fmt)
        if "asctime" not in fmt and "created" not in fmt:
            self.no_time = True
        else:
            self.no_time = False
        super().__init__()

    def message(self) -> pl.Expr:
        if self.message_last:
            return super().message()
        return pl.col("message")

    def fields(self, heads: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, dict]:
        cols = set(heads.columns)
        if "asctime" in cols:
            naive = (
                pl.col("asctime")
                .str.replace(",", ".", literal=True)
                .str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
            )
            if "msecs" in cols:
                # ``%(asctime)s.%(msecs)03d`` with a datefmt that has no fraction: the
                # milliseconds are in their own field
                msecs_us = (pl.col("msecs").cast(pl.Float64, strict=False) * 1000).round().cast(pl.Int64)
                naive = (
                    pl.when(pl.col("asctime").str.contains(r"[,.]\d+$"))
                    .then(naive)
                    .otherwise(naive + pl.duration(microseconds=msecs_us))
                )
            ts = _local_to_utc(naive, ctx.tz)
        elif "created" in cols:
            ts = (pl.col("created").cast(pl.Float64, strict=False) * 1e6).cast(pl.Int64).cast(
                pl.Datetime("us", "UTC")
            )
        else:
            ts = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
        return heads.select(
            ts=ts,
            level=pl.col("levelname") if "levelname" in cols else _NULL_STR,
            logger=pl.col("name") if "name" in cols else _NULL_STR,
            error_code=_NULL_STR,
            project=_NULL_STR,
        ), ctx.state


# -- Supabase Realtime server (Elixir Logger console) --


class RealtimeServerPreset(LinePreset):
    """``[docker -t ts ]HH:MM:SS.mmm key=value ... [level] message`` (realtime-protocol.md §5.3)."""

    name = "realtime-server"
    stateless = False
    prefix = (
        r"^(?P<_p>(?:(?P<dts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) "
        r"|(?P<ddt>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) )?"
        r"(?P<time>\d\d:\d\d:\d\d\.\d{3}) (?P<meta>(?:[a-z_]+=\S* )*)\[(?P<level>[a-z]+)\] )"
    )

    def continuation(self) -> pl.Expr:
        # ``docker logs -t`` (and Docker Desktop) stamp every line, continuation lines too: the
        # stamp is not part of the message when the record's head carried one
        stamped = pl.col("dts").is_not_null() | pl.col("ddt").is_not_null()
        head_stamped = pl.when(pl.col("_new")).then(stamped).forward_fill()
        return (
            pl.when(head_stamped)
            .then(pl.col("line").str.replace(self._stamp, ""))
            .otherwise(pl.col("line"))
        )

    _stamp = r"^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) "

    def fields(self, heads: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, dict]:
        day_us = 86_400_000_000
        tod = pl.col("time").str.to_time("%H:%M:%S%.f", strict=False).cast(pl.Int64)  # ns since midnight
        tod_us = tod // 1000
        docker = pl.col("dts").str.to_datetime(time_unit="us", strict=False, time_zone="UTC")
        desktop = _local_to_utc(pl.col("ddt").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", strict=False), ctx.tz)
        ref = pl.coalesce(docker, desktop).cast(pl.Int64)
        # date of the reference stamp + the line's own time, moved by a day if they straddle midnight
        guess = (ref // day_us) * day_us + tod_us
        delta = guess - ref
        from_docker = guess - pl.when(delta > day_us // 2).then(day_us).otherwise(0) + pl.when(
            delta < -day_us // 2
        ).then(day_us).otherwise(0)
        state = dict(ctx.state)
        start_day = state.get("day")
        if start_day is None and ctx.date is not None:
            start_day = int(datetime.strptime(ctx.date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) // 86400
        if start_day is not None:
            # without a date on the line the clock running backwards across midnight means a new day
            tods = heads.select(pl.when(pl.col("parsed")).then(tod_us).alias("t"))["t"]
            prev = tods.shift(1).forward_fill()
            if state.get("last_tod") is not None:
                prev = prev.fill_null(state["last_tod"])
            wraps = ((prev - tods) > day_us // 2).fill_null(False).cast(pl.Int64).cum_sum()
            heads = heads.with_columns((wraps + start_day).alias("_day"))
            state["day"] = int(start_day + (wraps[-1] if len(wraps) else 0))
            known = tods.drop_nulls()
            if len(known):
                state["last_tod"] = int(known[-1])
            from_date = pl.col("_day") * day_us + tod_us
        else:
            from_date = pl.lit(None, dtype=pl.Int64)
        ts_int = pl.when(pl.col("dts").is_not_null() | pl.col("ddt").is_not_null()).then(from_docker).otherwise(from_date)
        meta = pl.col("meta")
        return heads.select(
            ts=ts_int.cast(pl.Datetime("us", "UTC")),
            level=pl.col("level"),
            logger=pl.lit("realtime-server", dtype=pl.String),
            error_code=meta.str.extract(r"(?:^| )error_code=(\S+)", 1),
            project=meta.str.extract(r"(?:^| )project=(\S+)", 1),
        ), state


# -- JSON lines (python-json-logger, structlog) --

_TIME_KEYS = ("timestamp", "time", "asctime", "@timestamp", "ts", "datetime", "date")
_LEVEL_KEYS = ("level", "levelname", "severity", "log.level", "lvl")
_LOGGER_KEYS = ("logger", "name", "logger_name", "log.logger")
_MESSAGE_KEYS = ("message", "msg", "event", "event_message")


def _first(obj: dict, keys: tuple[str, ...]):
    for k in keys:
        v = obj.get(k)
        if v is not None and v != "":
            return v
    return None


def parse_time_value(value, tz: str) -> datetime | None:
    """A timestamp as JSON loggers and exports write it, as an aware UTC datetime (or None)."""
    from zoneinfo import ZoneInfo

    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:  # an integer with hundreds of digits is no time
            return None
        if v > 1e17:  # ns
            v /= 1e9
        elif v > 1e14:  # us
            v /= 1e6
        elif v > 1e11:  # ms
            v /= 1e3
        try:
            return datetime.fromtimestamp(v, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        s = value.strip()
        if re.fullmatch(r"\d{10,19}(\.\d+)?", s):
            return parse_time_value(float(s), tz)
        s = s.replace(",", ".")
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return None
        if dt.tzinfo is None:
            try:
                local = dt.replace(tzinfo=ZoneInfo(tz))
            except Exception:  # noqa: BLE001 - unknown zone names are caught at option parsing
                return None
            # a local time that does not exist or repeats (DST) is not guessed
            if local.astimezone(UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None) != dt:
                return None
            if dt.replace(tzinfo=ZoneInfo(tz), fold=1).utcoffset() != local.utcoffset():
                return None
            return local.astimezone(UTC)
        return dt.astimezone(UTC)
    return None


def _as_text(v) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


class JsonPreset(LinePreset):
    name = "json"
    prefix = r"^(?P<_p>\s*\{)"

    def detect(self, sample: list[str]) -> float:
        lines = [s for s in sample if s.strip()]
        if not lines:
            return 0.0
        ok = 0
        for s in lines:
            try:
                ok += isinstance(json.loads(s), dict)
            except ValueError:
                pass
        return ok / len(lines)

    def message(self) -> pl.Expr:
        return pl.col("line")

    def fields(self, heads: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, dict]:
        ts, level, logger, msg, code, project, ok = [], [], [], [], [], [], []
        for raw, parsed in zip(heads["raw"].to_list(), heads["parsed"].to_list(), strict=True):
            obj, tail = None, None
            if parsed:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    first, _, tail = raw.partition("\n")
                    try:
                        obj = json.loads(first)
                    except ValueError:
                        obj = None
            if not isinstance(obj, dict):
                ok.append(False)
                ts.append(None), level.append(None), logger.append(None)
                msg.append(raw), code.append(None), project.append(None)
                continue
            ok.append(True)
            ts.append(parse_time_value(_first(obj, _TIME_KEYS), ctx.tz))
            lv = _first(obj, _LEVEL_KEYS)
            level.append(_valid(lv) if isinstance(lv, str) else None)
            logger.append(_valid(_as_text(_first(obj, _LOGGER_KEYS))))
            m = _first(obj, _MESSAGE_KEYS)
            extra = obj.get("exc_info") or obj.get("exception") or obj.get("stack_info")
            text = _as_text(m) if m is not None else raw
            if isinstance(extra, str) and extra:
                text = f"{text}\n{extra}"
            if tail:
                text = f"{text}\n{tail}"
            # json.loads turns "\ud800"-style escapes into lone surrogates, which are not text
            msg.append(_valid(text))
            code.append(_valid(_as_text(obj.get("error_code"))))
            project.append(_valid(_as_text(obj.get("project"))))
        out = pl.DataFrame(
            {
                "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
                "level": pl.Series(level, dtype=pl.String),
                "logger": pl.Series(logger, dtype=pl.String),
                "message": pl.Series(msg, dtype=pl.String),
                "error_code": pl.Series(code, dtype=pl.String),
                "project": pl.Series(project, dtype=pl.String),
                "parsed": pl.Series(ok, dtype=pl.Boolean),
            }
        )
        return out, ctx.state


# -- Supabase dashboard log explorer export --


class SupabaseExportPreset(Preset):
    """A JSON (array of rows) or CSV export of ``realtime_logs`` (realtime-protocol.md §5.3)."""

    name = "supabase-export"
    whole_file = True

    def detect(self, sample: list[str]) -> float:
        head = "\n".join(sample[:50])
        if "event_message" not in head:
            return 0.0
        first = next((s for s in sample if s.strip()), "")
        if first.lstrip().startswith(("[", "{")) or first.lstrip('"').startswith(("id", "timestamp", "event_message")):
            return 1.0
        return 0.5

    def parse_whole(self, data: bytes, ctx: Context) -> tuple[pa.Table, int]:
        """Parse a whole export; returns its rows and the number of bytes they account for."""
        # surrogateescape keeps one character per invalid byte, so character positions map back
        # to exact byte offsets; the text is made valid (U+FFFD) per value in _export_record
        text = data.decode("utf-8", "surrogateescape")
        stripped = text.lstrip("\ufeff \t\r\n")
        rows: list[tuple[int, str, dict | None]]
        if stripped.startswith(("[", "{")):
            rows = _json_rows(text)
        else:
            rows = _csv_rows(text)
        records = []
        char_pos = byte_pos = 0
        for char_off, raw, obj in rows:
            if char_off < char_pos:  # rows come in file order; stay exact if one does not
                char_pos = byte_pos = 0
            byte_pos += len(_encode(text[char_pos:char_off]))
            char_pos = char_off
            records.append(_export_record(byte_pos, raw, obj, ctx))
        df = pl.DataFrame(
            records,
            schema={
                "off": pl.Int64,
                "ts": pl.Datetime("us", "UTC"),
                "level": pl.String,
                "logger": pl.String,
                "message": pl.String,
                "error_code": pl.String,
                "project": pl.String,
                "raw": pl.String,
                "parsed": pl.Boolean,
            },
            orient="row",
        )
        return assemble(df, ctx, 0), len(data)


def _json_rows(text: str) -> list[tuple[int, str, dict | None]]:
    dec = json.JSONDecoder()
    i = 0
    n = len(text)
    while i < n and text[i] in "\ufeff \t\r\n":
        i += 1
    out: list[tuple[int, str, dict | None]] = []
    if i < n and text[i] == "{":  # one object, or JSON lines
        while i < n:
            try:
                obj, end = dec.raw_decode(text, i)
            except ValueError:
                end = text.find("\n", i)
                end = n if end < 0 else end
                out.append((i, text[i:end], None))
            else:
                out.append((i, text[i:end], obj if isinstance(obj, dict) else None))
            i = end
            while i < n and text[i] in " \t\r\n":
                i += 1
        return out
    i += 1  # '['
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            break
        try:
            obj, end = dec.raw_decode(text, i)
        except ValueError:
            out.append((i, text[i:], None))  # the rest is kept raw, unparsed
            break
        out.append((i, text[i:end], obj if isinstance(obj, dict) else None))
        i = end
    return out


def _encode(text: str) -> bytes:
    """The bytes ``text`` was decoded from (surrogateescape), lone surrogates from JSON escapes as is."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a \ud800-style escape decoded by json: not from the file's bytes
        return text.encode("utf-8", "surrogatepass")


_JSON_SURROGATE_RX = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _valid(value: str | None) -> str | None:
    """``value`` as valid Unicode: undecodable bytes and lone surrogates become U+FFFD."""
    if value is None or value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes such as "\ud800"
        return _JSON_SURROGATE_RX.sub("\ufffd", value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _csv_rows(text: str) -> list[tuple[int, str, dict | None]]:
    # rows end at "\n" only: str.splitlines would also cut at form feeds, U+2028 and friends,
    # which Studio leaves unquoted inside a value
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    positions = []
    pos = 0
    for line in lines:
        positions.append(pos)
        pos += len(line)
    idx = 0

    def feed():
        nonlocal idx
        while idx < len(lines):
            idx += 1
            yield lines[idx - 1]

    reader = csv.reader(feed())
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error:  # not a CSV header after all (a stray "\r", a giant field): keep every line
        return [(at, line.rstrip("\r\n"), None) for at, line in zip(positions, lines, strict=True)]
    out = []
    while True:
        start = idx
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            out.append((positions[start], "".join(lines[start:idx]).rstrip("\r\n"), None))
            continue
        raw = "".join(lines[start:idx]).rstrip("\r\n")
        if not row:
            continue
        obj = {}
        for k, v in zip(header, row, strict=False):
            if v == "null":
                obj[k] = None
            elif v[:1] in "[{":
                try:
                    obj[k] = json.loads(v)
                except ValueError:
                    obj[k] = v
            else:
                obj[k] = v
        out.append((positions[start] if start < len(positions) else pos, raw, obj if len(row) == len(header) else None))
    return out


def _flat_metadata(meta) -> dict:
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return {}
    if isinstance(meta, list):
        merged: dict = {}
        for item in meta:
            if isinstance(item, dict):
                merged.update(item)
        return merged
    return meta if isinstance(meta, dict) else {}


def _export_record(off: int, raw: str, obj: dict | None, ctx: Context) -> tuple:
    raw = _valid(raw)
    if obj is None:
        return (off, None, None, None, raw, None, None, raw, False)
    meta = _flat_metadata(obj.get("metadata"))
    meta.update(_flat_metadata(obj.get("log_attributes")))
    ts_value = obj.get("timestamp", obj.get("time"))
    ts = parse_time_value(ts_value, "UTC")
    message = obj.get("event_message", obj.get("message"))
    message = _as_text(message) if message is not None else raw
    level = meta.get("level") or obj.get("severity_text") or obj.get("level")
    project = meta.get("project") or meta.get("external_id") or obj.get("project")
    code = meta.get("error_code") or obj.get("error_code")
    return (
        off,
        ts,
        _valid(_as_text(level)),
        "realtime-server",
        _valid(message),
        _valid(_as_text(code)),
        _valid(_as_text(project)),
        raw,
        True,
    )


# ---- registry and detection ------------------------------------------------------------------

PRESETS: dict[str, Callable[..., Preset]] = {
    "python": PythonPreset,
    "json": JsonPreset,
    "realtime-server": RealtimeServerPreset,
    "supabase-export": SupabaseExportPreset,
}
PRESET_NAMES = ("auto", *PRESETS)


def make_preset(name: str, pattern: str | None = None) -> Preset:
    """Build a preset by name; ``pattern`` is the logging format string for ``python``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    if pattern is not None:
        if name != "python":
            raise ConfigError("--pattern applies to the python preset only")
        return PythonPreset(pattern)
    return PRESETS[name]()


def detect_preset(sample: bytes, pattern: str | None = None) -> tuple[Preset, float]:
    """Pick the preset that best fits the first lines of a file (``auto``)."""
    lines = sample.decode("utf-8", "replace").splitlines()[:50]
    candidates = [SupabaseExportPreset(), JsonPreset(), RealtimeServerPreset(), PythonPreset(pattern or DEFAULT_PYTHON_FORMAT)]
    if pattern:
        candidates = [PythonPreset(pattern), *candidates[:3]]
    best, score = candidates[-1], 0.0
    for preset in candidates:
        s = preset.detect(lines)
        if s > score:
            best, score = preset, s
    return best, score


def error_code_of(text: str) -> str | None:
    """The first known Realtime error code named in ``text`` (same rule as the vectorised one)."""
    m = _CODE_RX.search(text)
    return (m.group("kv") or m.group("prefix")) if m else None


__all__ = [
    "Block",
    "Context",
    "PRESETS",
    "PRESET_NAMES",
    "compile_logging_format",
    "detect_preset",
    "error_code_of",
    "make_preset",
    "redact_text",
    "split_lines",
]
