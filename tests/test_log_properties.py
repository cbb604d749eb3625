"""Properties of log parsing on any bytes: nothing crashes, every byte lands in exactly one record,
and where a file is cut into blocks does not change the rows."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from recorder.logpresets import (
    Context,
    JsonPreset,
    PythonPreset,
    RealtimeServerPreset,
    SupabaseExportPreset,
    detect_preset,
)
from recorder.redact import redact_text

# Redaction may rewrite raw text that looks like a secret; generated text avoids those shapes
# (and the expected raw goes through redact_text anyway, for what random bytes may form).
SECRET_HINTS = ("eyj", "apikey", "api_key", "api-key", "token", "passw", "secret", "sb_", "bearer", "authorization")

PRESETS = {
    "python": lambda: PythonPreset(),
    "realtime-server": lambda: RealtimeServerPreset(),
    "json": lambda: JsonPreset(),
}

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def no_secret(text: str) -> bool:
    low = text.lower()
    return not any(hint in low for hint in SECRET_HINTS)


text = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=24).filter(no_secret)
digits2 = st.integers(0, 99).map(lambda n: f"{n:02d}")  # also impossible hours and minutes


@st.composite
def log_lines(draw, a_log_line, a_server_line, a_json_line) -> bytes:
    """One line (without its terminator) of the kinds a real log file mixes, or random bytes."""
    kind = draw(st.sampled_from(["python", "server", "docker", "json", "continuation", "traceback", "bytes", "empty"]))
    message = draw(text)
    if kind == "python":
        ts = f"2026-{draw(digits2)}-{draw(digits2)} {draw(digits2)}:{draw(digits2)}:{draw(digits2)}"
        ts += draw(st.sampled_from(["", ",123", ".5"]))
        level = draw(st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "Warn", "x"]))
        line = a_log_line(message, ts=ts, level=level, logger=draw(st.sampled_from(["bot", "realtime._async.client"])))
    elif kind in ("server", "docker"):
        time = f"{draw(digits2)}:{draw(digits2)}:{draw(digits2)}.{draw(st.integers(0, 999)):03d}"
        docker = "2026-11-24T23:59:59.999999999Z" if kind == "docker" else None
        meta = draw(st.sampled_from(["", "project=realtime-dev external_id=realtime-dev ", "error_code=UnableToBroadcastChanges "]))
        line = a_server_line(message, time=time, level=draw(st.sampled_from(["info", "error", "warning"])), meta=meta, docker=docker)
    elif kind == "json":
        stamp = draw(st.one_of(st.integers(), st.floats(), text, st.none()))  # any value where a time goes
        line = draw(st.sampled_from([a_json_line(message), json.dumps({"event": message, "level": "info", "ts": stamp}),
                                     "{" + message]))
    elif kind == "continuation":
        line = "  " + message
    elif kind == "traceback":
        line = draw(st.sampled_from(["Traceback (most recent call last):", "KeyError: 'status'", "}"]))
    elif kind == "empty":
        line = ""
    else:
        return draw(st.binary(max_size=24))  # may hold \n, \r, \0 and invalid UTF-8
    return line.encode()


@st.composite
def log_files(draw, a_log_line, a_server_line, a_json_line) -> bytes:
    lines = draw(st.lists(log_lines(a_log_line, a_server_line, a_json_line), max_size=14))
    out = b""
    for line in lines:
        out += line + draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r\r\n", b"\r", b""]))
    if draw(st.booleans()):
        out = out.rstrip(b"\n")  # no final newline
    return out


def expected_raw(span: bytes) -> str:
    """What split_lines makes of a record's bytes: lines without "\\n" and one "\\r", joined by "\\n"."""
    lines = span.split(b"\n")
    if span.endswith(b"\n"):
        lines.pop()
    return "\n".join(line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines)


def ctx(state: dict | None = None) -> Context:
    return Context("prop", "prop.log", "prop-id", "Europe/Berlin", "2026-11-24", dict(state or {}))


def parse_whole(preset, data: bytes) -> tuple[list[dict], int]:
    block = preset.parse(data, 0, ctx(), eof=True, emit_last=True)
    return block.table.to_pylist(), block.consumed


def parse_in_blocks(preset, data: bytes, sizes: list[int]) -> list[dict]:
    """Feed ``data`` the way the follower does: from ``offset + consumed``, growing a block that
    yields nothing, and only the last one at EOF."""
    rows: list[dict] = []
    pos, state, extra, i = 0, {}, 0, 0
    while True:
        end = min(len(data), pos + sizes[i % len(sizes)] + extra)
        i += 1
        at_end = end == len(data)
        block = preset.parse(data[pos:end], pos, ctx(state), eof=at_end, emit_last=at_end)
        rows += block.table.to_pylist()
        if at_end:
            assert pos + block.consumed == len(data)
            return rows
        if block.consumed == 0:
            extra += sizes[(i - 1) % len(sizes)]
            continue
        assert block.consumed <= end - pos
        pos, state, extra = pos + block.consumed, block.state, 0


@pytest.fixture(scope="module")
def files(a_log_line, a_server_line, a_json_line):
    return log_files(a_log_line, a_server_line, a_json_line)


@pytest.mark.parametrize("name", PRESETS)
def test_every_byte_is_in_exactly_one_record(name, files):
    @FAST
    @given(data=files)
    @example(data=b"")  # no bytes, no record (not one empty record)
    @example(data=b"\xff\r\r\n\x00\n  cont\r")
    def check(data: bytes) -> None:
        rows, consumed = parse_whole(PRESETS[name](), data)
        assert consumed == len(data)
        offsets = [r["offset"] for r in rows]
        if not data:
            assert rows == []
            return
        assert offsets[0] == 0
        assert offsets == sorted(set(offsets))
        bounds = [*offsets, len(data)]
        for row, start, end in zip(rows, bounds, bounds[1:], strict=False):
            assert start < end
            assert row["raw"] == redact_text(expected_raw(data[start:end]))
            assert (row["source"], row["file"], row["file_id"]) == ("prop", "prop.log", "prop-id")
            if not row["parsed"]:
                assert (row["ts"], row["level"], row["logger"]) == (None, None, None)

    check()


@pytest.mark.parametrize("name", PRESETS)
def test_blocks_give_the_same_rows_as_one_block(name, files):
    @FAST
    @given(data=files, sizes=st.lists(st.integers(1, 80), min_size=1, max_size=4))
    def check(data: bytes, sizes: list[int]) -> None:
        whole, _ = parse_whole(PRESETS[name](), data)
        assert parse_in_blocks(PRESETS[name](), data, sizes) == whole

    check()


@FAST
@given(data=st.one_of(st.binary(max_size=300), st.builds(lambda b: b"[\n  {" + b, st.binary(max_size=200)),
                      st.builds(lambda b: b"id,timestamp,event_message,metadata\r\n" + b, st.binary(max_size=200))))
@example(data=b"\r\x00")  # a header csv cannot read
def test_exports_and_detection_never_crash_on_any_bytes(data):
    table, consumed = SupabaseExportPreset().parse_whole(data, ctx())
    rows = table.to_pylist()
    assert consumed == len(data)
    offsets = [r["offset"] for r in rows]
    assert offsets == sorted(offsets) and all(0 <= off < max(len(data), 1) for off in offsets)
    preset, score = detect_preset(data)
    assert preset.name in ("python", "json", "realtime-server", "supabase-export") and 0 <= score <= 1
