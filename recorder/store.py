"""The on-disk event store: its layout, schemas, version, write-ahead log and part commits.

This module is the one owner of the format (design.md, "The store"). Everyone else asks it:
writers go through :class:`StoreWriter`, readers through :func:`open_store` and
:meth:`Store.part_glob`.

Layout::

    STORE/store.json                                 {"format": "rt-blackbox-store", "version": 1, ...}
    STORE/frames/date=YYYY-MM-DD/part-*.parquet
    STORE/logs/date=YYYY-MM-DD/part-*.parquet        (date=unknown for records whose time is unknown)
    STORE/derived/v<N>/<name>/date=.../part-*.parquet derived tables of each part, same file name
                                                     (recorder/derive.py: a cache the analyzer reads)
    STORE/_wal/<writer>/lock                         flock held while a recorder writes
    STORE/_wal/<writer>/wal-<segment>.log            write-ahead log (see below)
    STORE/_wal/<writer>/state.json                   commit point: last committed LSN, checkpoints

Write-ahead log. Every :meth:`StoreWriter.append` writes one entry before it returns (that
is the acknowledgement) and a crash of the process at any instant loses no acknowledged
entry: ``write(2)`` has handed the bytes to the kernel. An entry is
``magic(4) crc32(4) lsn(8) length(4) body`` where body is ``meta_len(4) meta_json arrow_ipc``;
the CRC covers lsn, length and body, so a torn tail is detected and cut at recovery.

Commit. Buffered entries become Parquet parts: each part is written to a hidden temporary
name and fsynced, then ``state.json`` is replaced atomically with the new committed LSN, the
checkpoints as of that LSN and the list of pending renames (the commit point), then the parts
are renamed into place. Recovery redoes pending renames, deletes stray temporaries, and
re-buffers WAL entries after the committed LSN: each acknowledged entry lands exactly once.

Derived tables. After each commit a thread of the writer derives the tables of recorder/derive.py
from the new parts and writes them beside them (temporary name, fsync, rename), while the next
rows are read; ``close`` waits for it. They are never needed for correctness: a reader that
finds a part without them (not derived yet, deriving failed, a crash in between) derives that
part itself, and a writer that starts again derives its own parts that lack them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import StoreError, StoreLockedError

FORMAT = "rt-blackbox-store"
VERSION = 1
TABLES = ("frames", "logs")
UNKNOWN_DATE = "unknown"
DERIVED_DIR = "derived"

log = logging.getLogger(__name__)

TS = pa.timestamp("us", tz="UTC")

FRAMES_SCHEMA = pa.schema(
    [
        ("ts", TS),
        ("session_id", pa.string()),
        ("seq", pa.int64()),
        ("direction", pa.string()),
        ("kind", pa.string()),
        ("vsn", pa.string()),
        ("topic", pa.string()),
        ("event", pa.string()),
        ("ref", pa.string()),
        ("join_ref", pa.string()),
        ("payload", pa.string()),
        ("payload_bytes", pa.int64()),
        ("raw", pa.binary()),
        ("close_code", pa.int32()),
        ("decode_error", pa.string()),
        ("source", pa.string()),
    ]
)

LOGS_SCHEMA = pa.schema(
    [
        ("ts", TS),
        ("source", pa.string()),
        ("file", pa.string()),
        ("file_id", pa.string()),
        ("offset", pa.int64()),
        ("level", pa.string()),
        ("logger", pa.string()),
        ("message", pa.string()),
        ("error_code", pa.string()),
        ("project", pa.string()),
        ("raw", pa.string()),
        ("parsed", pa.bool_()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"frames": FRAMES_SCHEMA, "logs": LOGS_SCHEMA}

# Staging tables: a writer may append rows in a cheaper shape (for example raw captured
# frames, decoded later in batches) that are turned into a store table when committed.
# name -> (target table, staging schema, finalize(table) -> table in the target schema)
STAGING: dict[str, tuple[str, pa.Schema, Callable[[pa.Table], pa.Table]]] = {}


def register_staging(
    name: str, target: str, schema: pa.Schema, finalize: Callable[[pa.Table], pa.Table]
) -> None:
    """Register a staging table whose rows are converted to ``target`` rows at commit time."""
    STAGING[name] = (target, schema, finalize)


_MAGIC = b"RTW1"
_HEADER = struct.Struct("<4sIQI")  # magic, crc32, lsn, body length
_U32 = struct.Struct("<I")
# WAL entries are compressed: log text shrinks about 5x, which costs less than writing it.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


@dataclass
class Store:
    """An opened store directory (read side)."""

    path: Path
    meta: dict

    def table_dir(self, table: str) -> Path:
        return self.path / table

    def part_glob(self, table: str) -> str:
        """Glob matching every committed part of ``table`` (temporaries never match)."""
        return str(self.path / table / "date=*" / "part-*.parquet")

    def part_files(self, table: str, writer: str | None = None) -> list[Path]:
        """The committed parts of ``table`` (only those ``writer`` wrote, when given)."""
        return sorted(self.table_dir(table).glob(f"date=*/part-{writer + '-' if writer else ''}*.parquet"))

    def derived_file(self, name: str, part: Path) -> Path:
        """Where derived table ``name`` of ``part`` (a part file of this store) lives."""
        from recorder.derive import DERIVE_VERSION

        return self.path / DERIVED_DIR / f"v{DERIVE_VERSION}" / name / part.parent.name / part.name

    def derived_parts(self, table: str, writer: str | None = None) -> tuple[list[tuple[Path, dict[str, Path]]], list[Path]]:
        """The parts of ``table`` (of ``writer``, when given) split in two: those with every derived
        table (each with a dict name -> derived file) and those without (to be derived by the reader)."""
        from recorder.derive import DERIVED

        names = DERIVED.get(table, ())
        done, missing = [], []
        for part in self.part_files(table, writer):
            files = {name: self.derived_file(name, part) for name in names}
            if names and all(f.is_file() for f in files.values()):
                done.append((part, files))
            else:
                missing.append(part)
        return done, missing


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    data = json.dumps(obj, indent=1, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """fsync a file or a directory (after a rename in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_os_error(err: OSError) -> str:
    return err.strerror or str(err)


def open_store(path: str | os.PathLike, create: bool = False) -> Store:
    """Open the store at ``path``; with ``create`` make it (and its parents) when missing.

    Raises :class:`StoreError` with one line a person can act on when ``path`` is not a
    store, is a store of another version, or cannot be created.
    """
    root = Path(path)
    meta_path = root / "store.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise StoreError(f"{root}: store.json is unreadable ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{root}: store.json does not describe an rt-blackbox store")
        version = meta.get("version")
        if type(version) is not int or version != VERSION:
            if type(version) is int and version > VERSION:
                raise StoreError(
                    f"{root}: store format version {version} is newer than this rt-blackbox "
                    f"understands ({VERSION}); upgrade rt-blackbox"
                )
            raise StoreError(f"{root}: store format version {version!r} is not supported (expected {VERSION})")
        return Store(root, meta)
    if not create:
        if not root.exists():
            raise StoreError(f"{root}: no such store (record into it first, e.g. rt-record logs FILE --store {root})")
        raise StoreError(f"{root}: not an rt-blackbox store (no store.json)")
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise StoreError(f"{root}: directory is not empty and is not an rt-blackbox store; choose a new path")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tables": {name: [f.name for f in schema] for name, schema in SCHEMAS.items()},
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        for table in TABLES:
            (root / table).mkdir(exist_ok=True)
        _write_json_atomic(meta_path, meta)
    except OSError as err:
        raise StoreError(f"{root}: cannot create store: {_describe_os_error(err)}") from None
    return Store(root, meta)


def write_derived(store: Store, table: str, rows: pa.Table, part: Path, tmp_prefix: str = ".tmp-") -> None:
    """Derive the tables of ``part`` (of ``table``, holding ``rows``) and put each in place atomically."""
    from recorder import derive

    for name, derived in derive.derive_part(table, rows).items():
        final = store.derived_file(name, part)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(tmp_prefix + final.name)
        pq.write_table(derived, tmp, compression="zstd", compression_level=1, row_group_size=derive.ROW_GROUP_ROWS)
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent)


def backfill_derived(path: str | os.PathLike) -> int:
    """Write the derived tables (recorder/derive.py) of every part that lacks them; the number of parts.

    For stores written before derived tables existed, or by a version whose derived tables
    differ. Parts are only read; each derived file appears atomically (temporary name, fsync,
    rename), so a reader or a running recorder never sees half of one.

    Example::

        backfill_derived("/var/lib/rt-store")  # then rt-analyze report reads them instead of deriving
    """
    store = open_store(path)
    todo = [(table, part) for table in TABLES for part in store.derived_parts(table)[1]]

    def derive_one(job: tuple[str, Path]) -> None:
        table, part = job
        try:
            rows = pq.read_table(part)
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"{part}: cannot read the part ({err})") from None
        try:
            write_derived(store, table, rows, part, f".tmp-backfill-{os.getpid()}-")
        except OSError as err:
            raise StoreError(f"{part}: cannot write its derived tables: {_describe_os_error(err)}") from None
        except Exception as err:  # noqa: BLE001 - DuckDB's errors, said in one line
            raise StoreError(f"{part}: cannot derive its tables ({str(err).splitlines()[0]})") from None

    # reading and writing files of one part while another is derived
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in pool.map(derive_one, todo):
            pass
    return len(todo)


class _Deriver:
    """A writer's thread that writes the derived tables of its committed parts, in order.

    At most ``depth`` parts wait (a commit blocks beyond that, so memory stays bounded). A
    failure is logged and leaves that part to be derived by its reader: never fatal.
    """

    def __init__(self, store: Store, writer: str, depth: int = 1) -> None:
        self.store = store
        self._jobs: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=f"rt-record-derive-{writer}", daemon=True)
        self._thread.start()

    def submit(self, table: str, rows: pa.Table | None, part: Path) -> None:
        """Derive ``part`` of ``table``; ``rows`` None reads the part back."""
        self._jobs.put((table, rows, part))

    def _run(self) -> None:
        try:  # below the recording itself: a proxy relays frames first, derives with the cores left
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                table, rows, part = job
                write_derived(self.store, table, pq.read_table(part) if rows is None else rows, part)
            except Exception as err:  # noqa: BLE001 - a failed cache must not stop the recorder
                log.warning("%s: derived tables of %s not written (%s); the analyzer derives them when reading",
                            self.store.path, job[2].name, str(err).splitlines()[0] if str(err) else type(err).__name__)
            finally:
                self._jobs.task_done()

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()


class WalReader:
    """Iterate the entries of one WAL segment: ``(lsn, meta, rows)`` with ``rows()`` lazy.

    Stops at the first torn or corrupt entry; ``torn_at`` is then its byte position (None
    when the segment is whole). Used by recovery, and by tests and tools that inspect a WAL.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_at: int | None = None

    def __iter__(self):
        data = Path(self.path).read_bytes()
        pos = 0
        while pos < len(data):
            if len(data) - pos < _HEADER.size:
                self.torn_at = pos
                return
            magic, crc, lsn, length = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if magic != _MAGIC or end > len(data):
                self.torn_at = pos
                return
            body = data[pos + _HEADER.size : end]
            if zlib.crc32(struct.pack("<QI", lsn, length) + body) != crc:
                self.torn_at = pos
                return
            pos = end
            (meta_len,) = _U32.unpack_from(body, 0)
            meta = json.loads(body[4 : 4 + meta_len])
            ipc = pa.py_buffer(body[4 + meta_len :])
            yield lsn, meta, (lambda ipc=ipc: pa.ipc.open_stream(ipc).read_all())


def empty_table(table: str) -> pa.Table:
    return SCHEMAS[table].empty_table()


def _partition_key(day: int | None) -> str:
    if day is None:
        return UNKNOWN_DATE
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


def _split_by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Split rows by the UTC day of ``ts``, keeping their order inside each day."""
    if table.num_rows == 0:
        return []
    micros = table["ts"].cast(pa.int64())
    # floor division (pyarrow's integer divide truncates towards zero, wrong before 1970)
    days = pc.divide(pc.subtract(micros, pc.if_else(pc.less(micros, 0), 86_400_000_000 - 1, 0)), 86_400_000_000)
    uniq = pc.unique(days).to_pylist()
    if len(uniq) == 1:
        only = uniq[0]
        return [(_partition_key(None if only is None else int(only)), table)]
    out = []
    for day in uniq:
        mask = pc.is_null(days) if day is None else pc.fill_null(pc.equal(days, day), False)
        out.append((_partition_key(None if day is None else int(day)), table.filter(mask)))
    return out


@dataclass
class _Pending:
    entries: dict[str, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0
    nbytes: int = 0
    first_lsn: int | None = None
    oldest: float | None = None


class StoreWriter:
    """Append-only writer with a write-ahead log; one per (store, writer name) at a time.

    Example::

        with StoreWriter("/tmp/store", writer="logs") as w:
            w.append("logs", table, checkpoints={"file:abc": {"offset": 1024}})

    ``append`` returns once the rows are in the write-ahead log (acknowledged). Parts are
    committed when ``flush_bytes``/``flush_rows`` are reached, when ``maybe_flush`` finds
    the oldest pending row older than ``flush_interval`` seconds, and on ``close``.
    ``checkpoints`` holds, after recovery, every checkpoint value ever appended (last wins).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        writer: str = "default",
        *,
        create: bool = True,
        flush_rows: int = 1_000_000,
        flush_bytes: int = 24 << 20,
        flush_interval: float = 1.0,
        segment_bytes: int = 256 << 20,
        compression: str = "zstd",
        compression_level: int | None = 1,
    ) -> None:
        if not writer or "/" in writer or writer.startswith("."):
            raise StoreError(f"invalid writer name {writer!r}")
        self.store = open_store(path, create=create)
        self.writer = writer
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.segment_bytes = segment_bytes
        self.compression = compression
        self.compression_level = compression_level
        self.checkpoints: dict[str, object] = {}
        self.committed_lsn = 0
        self.rows_committed = 0
        self.parts_committed = 0
        self.recovered_entries = 0
        self._next_lsn = 1
        self._pending = _Pending()
        self._pending_checkpoints: dict[str, object] = {}
        self._wal_fd: int | None = None
        self._segment = 0
        self._segment_size = 0
        self._closed = False
        self._deriver: _Deriver | None = None
        self.wal_dir = self.store.path / "_wal" / writer
        try:
            self.wal_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.wal_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"{self.store.path}: cannot write to store: {_describe_os_error(err)}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._lock_fd)
            raise StoreLockedError(
                f"{self.store.path}: another recorder (writer '{writer}', pid {other}) is writing this store"
            ) from None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, str(os.getpid()).encode(), 0)
        try:
            self._recover()
            self._open_segment()
        except OSError as err:
            self._release()
            raise StoreError(f"{self.store.path}: cannot write to store: {_describe_os_error(err)}") from None

    # ---- public API -------------------------------------------------------------------

    def append(self, table: str, rows: pa.Table | pa.RecordBatch | None, checkpoints: dict | None = None) -> int:
        """Write ``rows`` (and checkpoint values) to the WAL; return the entry's LSN.

        ``rows`` must have the columns of the table's schema (types are cast). ``rows`` may
        be None or empty to record only checkpoints.
        """
        if self._closed:
            raise StoreError("writer is closed")
        schema = self._schema_of(table)
        if rows is None:
            rows = schema.empty_table()
        elif isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        if rows.schema != schema:
            if set(rows.column_names) != set(schema.names):
                missing = sorted(set(schema.names) - set(rows.column_names))
                extra = sorted(set(rows.column_names) - set(schema.names))
                raise StoreError(f"rows for {table!r} do not match its schema (missing {missing}, extra {extra})")
            rows = rows.select(schema.names).cast(schema)
        lsn = self._next_lsn
        meta = json.dumps({"table": table, "checkpoints": checkpoints or {}}, separators=(",", ":")).encode()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema, options=_IPC_OPTIONS) as ipc:
            ipc.write_table(rows)
        ipc_buf = sink.getvalue()
        head = _U32.pack(len(meta)) + meta
        length = len(head) + ipc_buf.size
        crc = zlib.crc32(ipc_buf, zlib.crc32(head, zlib.crc32(struct.pack("<QI", lsn, length))))
        pieces = [_HEADER.pack(_MAGIC, crc, lsn, length), head, ipc_buf]
        try:
            self._write_all(pieces)
        except OSError as err:
            raise StoreError(
                f"{self.store.path}: cannot write to store: {_describe_os_error(err)}; "
                "nothing after the last acknowledged record was recorded"
            ) from None
        self._segment_size += _HEADER.size + length
        self._next_lsn += 1
        self._buffer(table, rows, checkpoints or {}, lsn)
        if self._pending.rows >= self.flush_rows or self._pending.nbytes >= self.flush_bytes:
            self.flush()
        return lsn

    def maybe_flush(self, now: float | None = None) -> bool:
        """Commit pending rows if the oldest is older than ``flush_interval``; True if it did."""
        oldest = self._pending.oldest
        if oldest is None:
            return False
        if (now if now is not None else time.monotonic()) - oldest >= self.flush_interval:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Commit every pending entry to Parquet parts (see the module docstring)."""
        pending = self._pending
        if pending.first_lsn is None:
            return
        last_lsn = self._next_lsn - 1
        try:
            self._commit(pending, last_lsn)
        except OSError as err:
            raise StoreError(f"{self.store.path}: cannot commit to store: {_describe_os_error(err)}") from None
        self._pending = _Pending()
        self._pending_checkpoints = {}
        if self._segment_size >= self.segment_bytes:
            self._rotate_segments()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
            self._rotate_segments()
        finally:
            self._release()

    def abandon(self) -> None:
        """Release the store without committing (after an error); the WAL keeps every entry."""
        if not self._closed:
            self._release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pending_rows(self) -> int:
        return self._pending.rows

    # ---- internals --------------------------------------------------------------------

    def _schema_of(self, table: str) -> pa.Schema:
        if table in SCHEMAS:
            return SCHEMAS[table]
        if table in STAGING:
            return STAGING[table][1]
        raise StoreError(f"unknown table {table!r} (known: {', '.join(list(SCHEMAS) + list(STAGING))})")

    def _release(self) -> None:
        self._closed = True
        if self._deriver is not None:  # its files belong to parts of this writer: finish them first
            self._deriver.stop()
            self._deriver = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _write_all(self, pieces: list) -> None:
        views = [memoryview(p) for p in pieces]
        while views:
            n = os.writev(self._wal_fd, views)
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = views[0][n:]

    def _buffer(self, table: str, rows: pa.Table, checkpoints: dict, lsn: int) -> None:
        p = self._pending
        if rows.num_rows:
            p.entries.setdefault(table, []).append(rows)
            p.rows += rows.num_rows
            p.nbytes += rows.nbytes
        if p.first_lsn is None:
            p.first_lsn = lsn
            p.oldest = time.monotonic()
        self.checkpoints.update(checkpoints)
        self._pending_checkpoints.update(checkpoints)

    def _segments(self) -> list[Path]:
        return sorted(self.wal_dir.glob("wal-*.log"))

    def _open_segment(self) -> None:
        segs = self._segments()
        self._segment = int(segs[-1].stem.split("-")[1]) + 1 if segs else 1
        path = self.wal_dir / f"wal-{self._segment:010d}.log"
        self._wal_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment_size = 0
        _fsync(self.wal_dir)

    def _rotate_segments(self) -> None:
        """Start a new WAL segment and delete the ones whose entries are all committed."""
        if self._pending.first_lsn is not None or self._wal_fd is None:
            return
        old = self._segments()
        os.close(self._wal_fd)
        self._wal_fd = None
        self._open_segment()
        for seg in old:
            if seg.name != f"wal-{self._segment:010d}.log":
                seg.unlink(missing_ok=True)

    def _read_state(self) -> dict:
        path = self.wal_dir / "state.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except ValueError as err:
            raise StoreError(f"{path}: unreadable ({err})") from None

    def _recover(self) -> None:
        state = self._read_state()
        self.committed_lsn = int(state.get("committed_lsn", 0))
        self.checkpoints = dict(state.get("checkpoints", {}))
        pending_renames = state.get("renames", [])
        for tmp, final in pending_renames:
            tmp_p, final_p = self.store.path / tmp, self.store.path / final
            if tmp_p.exists():
                os.replace(tmp_p, final_p)
            elif not final_p.exists():
                raise StoreError(f"{self.store.path}: committed part {final} is missing")
        keep = {final for _, final in pending_renames}
        prefix = f".tmp-part-{self.writer}-"
        strays = [tmp for table in TABLES for tmp in self.store.table_dir(table).glob(f"date=*/{prefix}*")]
        strays += (self.store.path / DERIVED_DIR).glob(f"*/*/date=*/{prefix}*")
        for tmp in strays:
            if str(tmp.relative_to(self.store.path)) not in keep:
                tmp.unlink()
        if pending_renames:
            self._write_state([])
        self._next_lsn = self.committed_lsn + 1
        for seg in self._segments():
            good = self._replay_segment(seg)
            if good is not None:  # torn tail: cut it so later appends follow a clean entry
                with open(seg, "r+b") as fh:
                    fh.truncate(good)
        if self._pending.first_lsn is not None:
            self.flush()
        # parts this writer committed whose derived tables a crash (or a failure) left unwritten
        for table in TABLES:
            for part in self.store.derived_parts(table, self.writer)[1]:
                self._derive(table, None, part)

    def _replay_segment(self, seg: Path) -> int | None:
        """Re-buffer entries after the committed LSN; return the good length if the tail is torn."""
        entries = WalReader(seg)
        for lsn, meta, rows in entries:
            self._next_lsn = max(self._next_lsn, lsn + 1)
            if lsn <= self.committed_lsn:
                continue
            self._buffer(meta["table"], rows(), meta.get("checkpoints", {}), lsn)
            self.recovered_entries += 1
        return entries.torn_at

    def _write_part(self, rows: pa.Table, tmp: Path) -> None:
        pq.write_table(rows, tmp, compression=self.compression, compression_level=self.compression_level,
                       row_group_size=256_000)
        _fsync(tmp)

    def _rename_pair(self, final: Path) -> tuple[str, str]:
        """(temporary, final) names of a file to commit, relative to the store."""
        tmp = final.with_name(f".tmp-{final.name}")
        return str(tmp.relative_to(self.store.path)), str(final.relative_to(self.store.path))

    def _write_state(self, renames: list) -> None:
        _write_json_atomic(
            self.wal_dir / "state.json",
            {"committed_lsn": self.committed_lsn, "checkpoints": self.checkpoints, "renames": renames},
        )

    def _final_tables(self, pending: _Pending) -> dict[str, list[pa.Table]]:
        out: dict[str, list[pa.Table]] = {}
        for name, tables in pending.entries.items():
            if name in STAGING:
                target, _schema, finalize = STAGING[name]
                out.setdefault(target, []).append(finalize(pa.concat_tables(tables)))
            else:
                out.setdefault(name, []).extend(tables)
        return out

    def _commit(self, pending: _Pending, last_lsn: int) -> None:
        renames: list[tuple[str, str]] = []
        committed: list[tuple[str, pa.Table, Path]] = []
        token = uuid.uuid4().hex[:8]
        for table, tables in self._final_tables(pending).items():
            whole = pa.concat_tables(tables).cast(SCHEMAS[table])
            for date, part in _split_by_date(whole):
                part_dir = self.store.table_dir(table) / f"date={date}"
                part_dir.mkdir(parents=True, exist_ok=True)
                name = f"part-{self.writer}-{last_lsn:012d}-{token}.parquet"
                self._write_part(part, part_dir / f".tmp-{name}")
                renames.append(self._rename_pair(part_dir / name))
                committed.append((table, part, part_dir / name))
                self.rows_committed += part.num_rows
                self.parts_committed += 1
        self.committed_lsn = last_lsn
        self._write_state(renames)  # commit point
        dirs = set()
        for tmp, final in renames:
            os.replace(self.store.path / tmp, self.store.path / final)
            dirs.add((self.store.path / final).parent)
        for d in dirs:
            _fsync(d)
        if renames:
            self._write_state([])
        for table, part, path in committed:
            self._derive(table, part, path)

    def _derive(self, table: str, rows: pa.Table | None, part: Path) -> None:
        if self._deriver is None:
            self._deriver = _Deriver(self.store, self.writer)
        self._deriver.submit(table, rows, part)
