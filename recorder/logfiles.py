"""Reading and following log files into the store: file identity, rotation, checkpoints.

A file is known by its identity (device, inode and a fingerprint of its first bytes), so a
rename, a copytruncate, a replacement or inode reuse is recognised whether it happens while
the recorder runs or while it is down. Each batch of rows is appended to the store together
with the checkpoint (identity and byte offset) that it advances: both land or neither does.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recorder.errors import ConfigError, InputError
from recorder.logpresets import Context, LinePreset, Preset, detect_preset, make_preset
from recorder.store import StoreWriter

FP_BYTES = 1024  # bytes of the file head that identify it
BLOCK_BYTES = 2 << 20  # read and parsed at a time: bigger blocks buy little speed and cost memory
FLUSH_BYTES = 12 << 20  # rows pending before a commit (also committed every second): ~3 MB parts
MAX_BLOCK_BYTES = 256 << 20  # a record larger than this is cut (the rest becomes its own record)
POLL_SECONDS = 0.2
IDLE_EMIT_SECONDS = 1.0  # a held-back last record is written once its file is quiet this long
ROTATED_QUIET_SECONDS = 1.0  # a rotated-away file is drained and closed once quiet this long
WRITER_NAME = "logs"
PARALLEL_MIN_BYTES = 1 << 20  # blocks of twice this are parsed as two halves in parallel
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rt-record-parse")


def default_source(path: str) -> str:
    """``realtime.log`` -> ``realtime``; ``bot.log.1`` -> ``bot``."""
    name = Path(path).name
    stem = name.split(".")[0]
    return stem or name


class Appender:
    """Appends to the writer on a background thread, in order, so the next block is parsed
    while this one is written (Polars and PyArrow release the GIL). ``sync`` waits for
    every queued append and re-raises the first error."""

    def __init__(self, writer: StoreWriter, depth: int = 1) -> None:
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rt-record-append", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    if isinstance(item, threading.Event):
                        item.set()
                    elif item == "tick":
                        self.writer.maybe_flush()
                    else:
                        self.writer.append("logs", item[0], item[1])
                        self.writer.maybe_flush()
            except BaseException as err:  # noqa: BLE001 - handed to the caller by sync()
                self._error = err
            finally:
                if isinstance(item, threading.Event):
                    item.set()
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def append(self, table: pa.Table, checkpoint: dict) -> None:
        self._raise()
        self._queue.put((table, checkpoint))

    def tick(self) -> None:
        self._raise()
        self._queue.put("tick")

    def sync(self) -> None:
        self._queue.join()
        self._raise()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


@dataclass
class Identity:
    dev: int
    ino: int
    fp_len: int
    fp: str
    gen: int = 0

    @property
    def file_id(self) -> str:
        base = f"{self.dev:x}-{self.ino:x}-{self.fp[:16]}"
        return f"{base}-g{self.gen}" if self.gen else base


def _fingerprint(fd: int, length: int) -> str:
    return hashlib.sha1(os.pread(fd, length, 0)).hexdigest()


def identify(fd: int) -> Identity | None:
    """Identity of an open file, or None while it is empty (nothing to fingerprint yet)."""
    st = os.fstat(fd)
    n = min(st.st_size, FP_BYTES)
    if n == 0:
        return None
    return Identity(st.st_dev, st.st_ino, n, _fingerprint(fd, n))


def _same_content(fd: int, ident: Identity) -> bool:
    try:
        return _fingerprint(fd, ident.fp_len) == ident.fp and os.fstat(fd).st_size >= ident.fp_len
    except OSError:
        return False


@dataclass
class FileSummary:
    path: str
    source: str
    preset: str = ""
    detected: bool = False
    records: int = 0
    unparsed: int = 0
    no_time: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "source": self.source,
            "preset": self.preset,
            "detected": self.detected,
            "records": self.records,
            "unparsed": self.unparsed,
            "no_time": self.no_time,
            "bytes": self.bytes,
            "notes": self.notes,
        }


class LogStream:
    """One log path: reads it (and what it rotated into) and appends rows to the writer."""

    def __init__(
        self,
        path: str,
        writer: StoreWriter,
        appender: Appender,
        *,
        source: str | None,
        preset: str,
        pattern: str | None,
        tz: str,
        date: str | None,
        say=None,
    ) -> None:
        self.path = path
        self.abspath = os.path.abspath(path)
        self.writer = writer
        self.appender = appender
        self.source = source or default_source(path)
        self.preset_name = preset
        self.pattern = pattern
        self.tz = tz
        self.date = date
        self.say = say or (lambda msg: None)
        self.summary = FileSummary(path, self.source)
        self.fd: int | None = None
        self.ident: Identity | None = None
        self.offset = 0
        self.state: dict = {}
        self.preset: Preset | None = None
        self.last_growth = time.monotonic()
        self.last_size = -1
        self.held = False  # bytes after offset that a later poll must still emit
        self.done = False  # whole-file preset already read

    # ---- checkpoints --------------------------------------------------------------------

    @property
    def _path_key(self) -> str:
        return f"path:{self.abspath}"

    def _checkpoint(self) -> dict:
        assert self.ident is not None
        cp = {
            f"log:{self.ident.file_id}": {
                "path": self.abspath,
                "dev": self.ident.dev,
                "ino": self.ident.ino,
                "fp_len": self.ident.fp_len,
                "fp": self.ident.fp,
                "gen": self.ident.gen,
                "offset": self.offset,
                "preset": self.preset.name if self.preset else None,
                "pattern": self.pattern,
                "state": self.state,
                "done": self.done,
            },
        }
        cp[self._path_key] = self.ident.file_id
        return cp

    def _known(self, ident: Identity, fd: int) -> dict | None:
        """The checkpoint of the file open on ``fd`` if it was read before (any generation)."""
        best = None
        for key, cp in self.writer.checkpoints.items():
            if not key.startswith("log:") or not isinstance(cp, dict):
                continue
            if cp.get("dev") != ident.dev or cp.get("ino") != ident.ino:
                continue
            probe = Identity(ident.dev, ident.ino, cp["fp_len"], cp["fp"])
            if _same_content(fd, probe) and (best is None or cp.get("gen", 0) > best.get("gen", 0)):
                best = cp
        return best

    # ---- opening --------------------------------------------------------------------------

    def open(self, required: bool) -> bool:
        """Open the path if it exists; resume from its checkpoint. False if not there (yet)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if required:
                raise InputError(f"{self.path}: no such file") from None
            return False
        except OSError as err:
            raise InputError(f"{self.path}: {err.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{self.path}: is a directory (give the log files, e.g. {self.path}/*.log)")
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as err:
            raise InputError(f"{self.path}: cannot read: {err.strerror}") from None
        ident = identify(fd)
        if ident is None:
            os.close(fd)
            return False  # empty: wait for the first bytes (identity needs them)
        self._recover_previous(ident, fd)
        cp = self._known(ident, fd)
        self.fd = fd
        if cp is not None:
            ident = Identity(ident.dev, ident.ino, cp["fp_len"], cp["fp"], cp.get("gen", 0))
            self.offset = int(cp["offset"])
            self.state = dict(cp.get("state") or {})
            self.done = bool(cp.get("done"))
            if cp.get("preset"):
                self.preset = make_preset(cp["preset"], cp.get("pattern") if cp["preset"] == "python" else None)
                self.summary.preset = self.preset.name
            if os.fstat(fd).st_size < self.offset:
                # truncated and rewritten with the same head: a new generation of this inode
                ident = Identity(ident.dev, ident.ino, ident.fp_len, ident.fp, ident.gen + 1)
                self.offset, self.state, self.done = 0, {}, False
        else:
            self.offset, self.state, self.done = 0, {}, False
        self.ident = ident
        self.last_growth = time.monotonic()
        return True

    def _recover_previous(self, current: Identity, fd: int) -> None:
        """The path now holds another file than at the last checkpoint: finish the old one."""
        prev_id = self.writer.checkpoints.get(self._path_key)
        prev = self.writer.checkpoints.get(f"log:{prev_id}") if prev_id else None
        if not isinstance(prev, dict) or prev.get("done"):
            return
        if prev["dev"] == current.dev and prev["ino"] == current.ino and _same_content(
            fd, Identity(current.dev, current.ino, prev["fp_len"], prev["fp"])
        ):
            return  # same file
        old = Identity(prev["dev"], prev["ino"], prev["fp_len"], prev["fp"], prev.get("gen", 0))
        found = self._find_rotated(old, int(prev["offset"]))
        if found is None:
            self.summary.notes.append(
                f"the file read before ({prev_id}) is gone; anything written to it after offset "
                f"{prev['offset']} and before rotation could not be read"
            )
            return
        rot_fd, rot_path = found
        self.say(f"{self.path}: reading the rest of {rot_path} (rotated while the recorder was down)")
        self._drain_other(rot_fd, old, int(prev["offset"]), prev)

    def _find_rotated(self, old: Identity, offset: int) -> tuple[int, str] | None:
        """A sibling of the path holding ``old`` (renamed, or a copytruncate copy) past ``offset``."""
        folder = os.path.dirname(self.abspath) or "."
        base = os.path.basename(self.abspath)
        stem = base.split(".")[0]
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        candidates = []
        for name in names:
            if name == base or not name.startswith(stem) or name.endswith((".gz", ".bz2", ".xz", ".zst")):
                continue
            p = os.path.join(folder, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size < offset:
                continue
            exact = (st.st_dev, st.st_ino) == (old.dev, old.ino)
            candidates.append((not exact, name, p))
        for _rank, _name, p in sorted(candidates):
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            if _same_content(fd, old):
                return fd, p
            os.close(fd)
        return None

    def _drain_other(self, fd: int, ident: Identity, offset: int, cp: dict) -> None:
        """Read ``fd`` (a rotated copy of ``ident``) from ``offset`` to its end, then close it."""
        saved = (self.fd, self.ident, self.offset, self.state, self.preset, self.done)
        self.fd, self.ident, self.offset = fd, ident, offset
        self.state = dict(cp.get("state") or {})
        self.done = False
        if cp.get("preset"):
            self.preset = make_preset(cp["preset"], cp.get("pattern") if cp["preset"] == "python" else None)
        try:
            self.pump(eof=True, emit_last=True)
        finally:
            os.close(fd)
            self.fd, self.ident, self.offset, self.state, self.preset, self.done = saved

    # ---- reading ----------------------------------------------------------------------------

    def _context(self) -> Context:
        assert self.ident is not None
        return Context(self.source, self.path, self.ident.file_id, self.tz, self.date, self.state)

    def _choose_preset(self, eof: bool) -> bool:
        if self.preset is not None:
            return True
        sample = os.pread(self.fd, 64 << 10, 0)
        if b"\n" not in sample and not eof:
            return False
        if self.preset_name == "auto":
            self.preset, score = detect_preset(sample, self.pattern)
            self.summary.detected = True
            how = f"auto-detected, fit {score:.2f}" if score else "auto: no preset matched, lines kept unparsed"
            self.say(f"{self.path}: preset {self.preset.name} ({how})")
        else:
            self.preset = make_preset(self.preset_name, self.pattern)
        self.summary.preset = self.preset.name
        return True

    def _append(self, table: pa.Table, nbytes: int) -> None:
        self.appender.append(table, self._checkpoint())
        s = self.summary
        s.records += table.num_rows
        s.bytes += nbytes
        if table.num_rows:
            parsed = table["parsed"]
            unparsed = table.num_rows - (pc.sum(parsed).as_py() or 0)
            if unparsed and s.unparsed == 0:
                first = table.filter(pc.invert(parsed))["raw"][0].as_py()
                s.notes.append(f"first line the {s.preset} preset could not parse: {first[:200]!r}")
            s.unparsed += unparsed
            s.no_time += pc.sum(pc.and_(parsed, pc.is_null(table["ts"]))).as_py() or 0

    def pump(self, *, eof: bool, emit_last: bool, progress=None) -> bool:
        """Read what is there from ``offset``; True if anything was appended."""
        if self.fd is None or self.ident is None:
            return False
        if not self._choose_preset(eof):
            return False
        appended = False
        if self.preset.whole_file:
            if self.done:
                return False
            size = os.fstat(self.fd).st_size
            data = os.pread(self.fd, size, 0)
            table, _ = self.preset.parse_whole(data, self._context())
            self.offset, self.done = len(data), True
            self._append(table, len(data))
            if progress:
                progress(len(data))
            return True
        want = BLOCK_BYTES
        while True:
            size = os.fstat(self.fd).st_size
            if self.offset >= size:
                break
            block = os.pread(self.fd, min(want, size - self.offset), self.offset)
            if not block:
                break
            at_end = self.offset + len(block) >= size
            forced = len(block) >= MAX_BLOCK_BYTES
            parts = self._parse_block(
                block, eof=(eof and at_end) or forced, emit_last=(emit_last and at_end) or forced
            )
            if not parts:
                if at_end:
                    break
                want *= 2
                continue
            want = BLOCK_BYTES
            for res in parts:
                self.offset += res.consumed
                self.state = res.state
                self._append(res.table, res.consumed)
                if progress:
                    progress(res.consumed)
            appended = True
        self.held = self.offset < os.fstat(self.fd).st_size
        return appended

    def _parse_block(self, block: bytes, *, eof: bool, emit_last: bool) -> list:
        """Parse a block read at ``offset``; large blocks in two halves on two threads.

        The halves are cut at a line that starts a record, so the first half's last record is
        complete. Presets whose state runs through the file (server lines dated by --date)
        are parsed in one piece.
        """
        preset = self.preset
        assert isinstance(preset, LinePreset)
        cut = None
        if len(block) >= 2 * PARALLEL_MIN_BYTES and preset.stateless:
            cut = preset.record_start_after(block, len(block) // 2)
        if cut is None:
            res = preset.parse(block, self.offset, self._context(), eof=eof, emit_last=emit_last)
            return [res] if res.consumed else []
        ctx = self._context()
        first = _POOL.submit(preset.parse, block[:cut], self.offset, ctx, eof=False, emit_last=True)
        second = preset.parse(block[cut:], self.offset + cut, ctx, eof=eof, emit_last=emit_last)
        head = first.result()
        if head.consumed != cut:  # cannot happen when cut starts a record; stay exact anyway
            res = preset.parse(block, self.offset, self._context(), eof=eof, emit_last=emit_last)
            return [res] if res.consumed else []
        return [head, second] if second.consumed else [head]

    # ---- following ----------------------------------------------------------------------------

    def poll(self, now: float) -> bool:
        """One follow step: open, detect rotation/truncation, read; True if rows were appended."""
        if self.fd is None:
            if not self.open(required=False):
                return False
        assert self.fd is not None and self.ident is not None
        fst = os.fstat(self.fd)
        if fst.st_size < self.offset or not _same_content(self.fd, self.ident):
            self._truncated()
            fst = os.fstat(self.fd)
        grew = fst.st_size != self.last_size
        if grew:
            self.last_size = fst.st_size
            self.last_growth = now
        appended = self.pump(eof=False, emit_last=False)
        try:
            pst = os.stat(self.path)
            moved = (pst.st_dev, pst.st_ino) != (fst.st_dev, fst.st_ino)
        except FileNotFoundError:
            moved = True
        quiet = now - self.last_growth >= (ROTATED_QUIET_SECONDS if moved else IDLE_EMIT_SECONDS)
        if moved and quiet:
            # renamed or deleted: what the writer still had in flight is in; finish and reopen
            appended |= self.pump(eof=True, emit_last=True)
            os.close(self.fd)
            self.fd, self.ident, self.preset, self.last_size = None, None, None, -1
            self.summary.notes.append("followed a rotation")
            return appended or self.poll(now)
        if self.held and quiet:
            appended |= self.pump(eof=False, emit_last=True)
        return appended

    def _truncated(self) -> None:
        """Copytruncate or rewrite in place: read the rest from the copy, restart at 0."""
        assert self.fd is not None and self.ident is not None
        old, old_offset = self.ident, self.offset
        cp = self._checkpoint()[f"log:{old.file_id}"]
        found = self._find_rotated(old, old_offset)
        if found is not None:
            self._drain_other(found[0], old, old_offset, cp)
        else:
            self.summary.notes.append(f"{self.path} was truncated at offset {old_offset}; no rotated copy found")
        ident = identify(self.fd)
        if ident is None:
            ident = Identity(old.dev, old.ino, 0, hashlib.sha1(b"").hexdigest(), old.gen + 1)
        elif ident.fp == old.fp and ident.fp_len == old.fp_len:
            ident.gen = old.gen + 1
        self.ident, self.offset, self.state, self.done, self.last_size = ident, 0, {}, False, -1
        if ident.fp_len == 0:  # empty after truncation: identify again when bytes arrive
            os.close(self.fd)
            self.fd, self.ident = None, None
        self.preset = None if self.preset_name == "auto" else self.preset

    def close(self, final: bool) -> None:
        if self.fd is not None:
            if final:
                self.pump(eof=False, emit_last=True)
            os.close(self.fd)
            self.fd = None


def validate_tz(tz: str | None) -> str:
    """The zone for naive local timestamps: ``--tz`` or the machine's zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if tz is None:
        tz = os.environ.get("TZ") or _machine_zone()
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz {tz!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
    return tz


def _machine_zone() -> str:
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            return link.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


def record_logs(
    paths: list[str],
    store: str,
    *,
    source: str | None = None,
    preset: str = "auto",
    pattern: str | None = None,
    follow: bool = False,
    tz: str | None = None,
    date: str | None = None,
    stop: threading.Event | None = None,
    say=None,
    progress_factory=None,
    writer_options: dict | None = None,
) -> list[FileSummary]:
    """Record log files into ``store``; with ``follow`` keep reading until ``stop`` is set.

    Returns one summary per path. Reading a file again resumes after what is already in the
    store, so importing twice records each line once.
    """
    from recorder.logpresets import PRESET_NAMES, compile_logging_format

    if not paths:
        raise InputError("give at least one log file")
    if preset not in PRESET_NAMES:
        raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESET_NAMES)})")
    if pattern is not None:
        compile_logging_format(pattern)  # fail early with a clear message
    if date is not None:
        try:
            time.strptime(date, "%Y-%m-%d")
        except ValueError:
            raise ConfigError(f"--date {date!r} is not YYYY-MM-DD") from None
    tz = validate_tz(tz)
    say = say or (lambda msg: print(msg, file=sys.stderr))
    if not follow:
        for p in paths:  # check every input before the store is touched
            if not os.path.exists(p):
                raise InputError(f"{p}: no such file")
            if os.path.isdir(p):
                raise InputError(f"{p}: is a directory (give the log files, e.g. {p}/*.log)")
            if not os.access(p, os.R_OK):
                raise InputError(f"{p}: cannot read: permission denied")
    writer = StoreWriter(store, WRITER_NAME, **{"flush_bytes": FLUSH_BYTES, **(writer_options or {})})
    appender = Appender(writer)
    streams = [
        LogStream(p, writer, appender, source=source, preset=preset, pattern=pattern, tz=tz, date=date, say=say) for p in paths
    ]
    try:
        if not follow:
            total = sum(os.path.getsize(p) for p in paths)
            advance = progress_factory(total) if progress_factory else None
            for s in streams:
                appender.sync()  # the checkpoints of the files before are known (a file named twice)
                if s.open(required=True):
                    s.pump(eof=True, emit_last=True, progress=advance)
                    s.close(final=False)
            appender.sync()
        else:
            stop = stop or threading.Event()
            while not stop.is_set():
                now = time.monotonic()
                active = False
                for s in streams:
                    active |= s.poll(now)
                appender.sync()  # checkpoints in the writer are current for the next poll
                appender.tick()
                if not active:
                    stop.wait(POLL_SECONDS)
            for s in streams:
                s.close(final=True)
            appender.sync()
        appender.stop()
        writer.close()
    finally:
        appender.stop()
        writer.abandon()  # after an error: release the lock; the WAL keeps what was acknowledged
    return [s.summary for s in streams]
