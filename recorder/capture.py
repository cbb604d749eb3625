"""Frame capture shared by the proxy and the recording client: hot-path rows, batched appends.

The hot path only redacts and appends a tuple (raw frame + envelope fields); decoding happens
at commit time in batches (``recorder.codec.decode_capture``). Appends to the store run on
one background thread, so a slow or failing disk never blocks forwarding: when the store
cannot be written, recording stops, the failure is said once, and dropped frames are counted.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa

from recorder import codec  # noqa: F401 - registers the frames_capture staging table
from recorder.codec import CAPTURE_SCHEMA
from recorder.errors import BlackboxError
from recorder.redact import might_contain_secret, redact_bytes, redact_url
from recorder.store import StoreWriter

BATCH_SECONDS = 0.05  # how long frames wait in memory before they are appended (acknowledged)


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class CaptureStats:
    recorded: int = 0
    unrecorded: int = 0
    sessions: int = 0
    failure: str | None = None
    notes: list[str] = field(default_factory=list)


class Session:
    """One WebSocket connection: a session id and a gap-free sequence of rows."""

    def __init__(self, recorder: FrameRecorder, vsn: str, session_id: str | None = None) -> None:
        self.recorder = recorder
        self.vsn = vsn
        self.session_id = session_id or uuid.uuid4().hex
        self.seq = 0

    def _row(self, direction: str, kind: str, raw: bytes | None, close_code: int | None, info: str | None) -> None:
        self.recorder._add(
            (now_us(), self.session_id, self.seq, direction, kind, self.vsn, raw, close_code, info)
        )
        self.seq += 1

    def frame(self, direction: str, data: str | bytes) -> None:
        """A text (``str``) or binary (``bytes``) frame as it crossed the wire."""
        if isinstance(data, str):
            raw, kind = data.encode("utf-8", "surrogateescape"), "text"
        else:
            raw, kind = bytes(data), "binary"
        if might_contain_secret(raw):
            raw = redact_bytes(raw)
        self._row(direction, kind, raw, None, None)

    def opened(self, url: str, **info) -> None:
        self._row("out", "open", None, None, json.dumps({"url": redact_url(url), "vsn": self.vsn, **info}))

    def closed(self, direction: str, code: int | None, reason: str = "", **info) -> None:
        """The connection closed; ``direction`` says who closed it (``in``: the server)."""
        self._row(direction, "close", None, code, json.dumps({"code": code, "reason": reason, **info}))

    def error(self, direction: str, message: str, **info) -> None:
        self._row(direction, "error", None, None, json.dumps({"error": message, **info}))


class FrameRecorder:
    """Collects rows of many sessions and appends them to ``store`` every ``BATCH_SECONDS``.

    ``start()`` runs the background appender; ``close()`` appends what is left and commits.
    """

    def __init__(self, store: str, writer: str, source: str, *, say=None, batch_seconds: float = BATCH_SECONDS):
        self.writer = StoreWriter(store, writer)
        self.source = source
        self.say = say or (lambda msg: None)
        self.batch_seconds = batch_seconds
        self.stats = CaptureStats()
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rt-record-{writer}", daemon=True)

    def start(self) -> FrameRecorder:
        self._thread.start()
        return self

    def session(self, vsn: str, session_id: str | None = None) -> Session:
        self.stats.sessions += 1
        return Session(self, vsn, session_id)

    def _add(self, row: tuple) -> None:
        with self._lock:
            self._rows.append(row)

    def _take(self) -> list[tuple]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def _table(self, rows: list[tuple]) -> pa.Table:
        cols = list(zip(*rows, strict=True))
        n = len(rows)
        return pa.table(
            [
                pa.array(cols[0], pa.int64()).cast(CAPTURE_SCHEMA.field("ts").type),
                pa.array(cols[1], pa.string()),
                pa.array(cols[2], pa.int64()),
                pa.array(cols[3], pa.string()),
                pa.array(cols[4], pa.string()),
                pa.array(cols[5], pa.string()),
                pa.array(cols[6], pa.binary()),
                pa.array(cols[7], pa.int32()),
                pa.array(cols[8], pa.string()),
                pa.array([self.source] * n, pa.string()),
            ],
            schema=CAPTURE_SCHEMA,
        )

    def append_pending(self) -> None:
        """Append buffered rows (acknowledging them) and commit parts that are due."""
        rows = self._take()
        if self.stats.failure is not None:
            self.stats.unrecorded += len(rows)
            return
        try:
            if rows:
                self.writer.append("frames_capture", self._table(rows))
                self.stats.recorded += len(rows)
            self.writer.maybe_flush()
        except BlackboxError as err:
            self.stats.unrecorded += len(rows)
            self.stats.failure = str(err)
            self.say(f"RECORDING STOPPED, still forwarding: {err}")

    def _run(self) -> None:
        while not self._stop.wait(self.batch_seconds):
            self.append_pending()

    def close(self) -> CaptureStats:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.append_pending()
        try:
            if self.stats.failure is None:
                self.writer.close()
        except BlackboxError as err:
            self.stats.failure = str(err)
            self.say(f"RECORDING STOPPED: {err}")
        finally:
            self.writer.abandon()
        return self.stats
