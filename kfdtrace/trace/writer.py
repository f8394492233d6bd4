"""TraceWriter: buffers records and blobs, flushes them as checksummed blocks, finalizes with an index.

The file is valid to a reader at every moment: the header block is written at construction, each
flush appends whole blocks (blobs before the records that reference them), and `close()` appends
the index block and the trailer. A process killed outright therefore loses only what it had not
flushed; `flush_interval` bounds that to about half a second even when the recorder is idle.
"""
from __future__ import annotations

import atexit
import datetime
import os
import platform
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import weakref
import zlib

from kfdtrace.errors import TraceError
from kfdtrace.trace import format as F
from kfdtrace.trace.format import BlobRef

_mono = time.monotonic_ns
_tid = threading.get_native_id
_ident = threading.get_ident


def _default_header(t0: int) -> dict:
    u = os.uname()
    return {
        "tool": "kfdtrace",
        "tool_version": _tool_version(),
        "trace_id": secrets.token_hex(16),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "created_ns": time.time_ns(),
        "clock": {"source": "CLOCK_MONOTONIC", "start_ns": t0},
        "host": socket.gethostname(),
        "kernel": u.release,
        "os": f"{u.sysname} {u.release} {u.version}",
        "machine": u.machine,
        "python": platform.python_version(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": list(sys.argv),
    }


def _tool_version() -> str:
    from kfdtrace import __version__
    return __version__


class TraceWriter:
    """Write a trace. Thread-safe; `write()` costs a few microseconds (msgpack + a list append).

    `codec` is "zlib" (default), "none" or "zstd" (needs the zstandard module); `chunk_bytes` is the
    raw size at which a block is flushed; `flush_interval` (seconds, None = off) the longest time a
    record may stay buffered; `strict` makes `write()` refuse unknown kinds and missing fields.
    """

    def __init__(self, path, header: dict, *, codec: str = "zlib", chunk_bytes: int = 1 << 20,
                 flush_interval: float | None = 0.5, level: int = 1, strict: bool = True):
        if codec not in F.CODECS:
            raise ValueError(f"unknown codec {codec!r} (choose from {', '.join(F.CODECS)})")
        if codec == "zstd" and not F.HAVE_ZSTD:
            raise TraceError("codec 'zstd' needs the zstandard module (pip install zstandard)", path=str(path))
        self.path = os.fspath(path)
        self._codec = F.CODECS[codec]
        self._level = level
        self._chunk_bytes = max(1, int(chunk_bytes))
        self._interval_ns = int(flush_interval * 1e9) if flush_interval else 0
        self._strict = strict
        self._lock = threading.Lock()
        self._owner: int | None = None      # thread ident inside the critical section (signal deferral)
        self._pending_signal: int | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._closing = False
        self._closer: int | None = None      # thread ident running close()
        self._inert = False                  # set in a forked child: it must not touch the parent's file
        self._packer = F.make_packer()
        self._t0 = _mono()
        self._tag = secrets.randbits(32)
        self._summary = F.Summary()
        self._chunks: list[F.ChunkInfo] = []
        self._notes: dict = {}
        # record buffer: n of its first record = self._first; n of the next = _first + len(_recs)
        self._recs: list[bytes] = []
        self._rec_bytes = 0
        self._first = 0
        self._buf_tmin = self._buf_tmax = 0
        # blob buffer
        self._blobs: list[bytes] = []
        self._blob_bytes = 0
        self._blob_pending: list[tuple[bytes, int, int]] = []   # hash, data offset in raw, size
        self._blob_seen: set[bytes] = set()
        self._blob_index = bytearray()
        self._blob_total = 0
        self._blob_refs = 0
        self._ended = False
        self.status: str | None = None

        hdr = _default_header(self._t0)
        hdr.update(header)
        hdr["format"] = f"{F.FORMAT_MAJOR}.{F.FORMAT_MINOR}"
        self.header = hdr
        head_block = F.make_block(F.KIND_HEADER, self._codec, self._pack(hdr, "header"), tag=self._tag, level=level)
        try:
            self._f = open(self.path, "wb", buffering=0)
        except OSError as e:
            raise TraceError(f"cannot create the trace: {e.strerror}", path=self.path) from None
        self._pos = 0
        self._last_flush = self._t0
        self._write_out(F.PREAMBLE.pack(F.MAGIC, F.FORMAT_MAJOR, F.FORMAT_MINOR, 0) + head_block)
        _writers_after_fork.add(self)
        self._stop = threading.Event()
        self._timer = None
        if self._interval_ns:
            self._timer = threading.Thread(target=self._flush_loop, name="kfdtrace-trace-flush", daemon=True)
            self._timer.start()

    # -- public API --------------------------------------------------------------------------------
    def now(self) -> int:
        """Nanoseconds since the trace started (the clock of every record's `t`)."""
        return _mono() - self._t0

    def write(self, kind: str, /, **fields) -> int:
        """Append one record and return its number. `t=` and `tid=` override the stamped values."""
        if self._inert:
            return -1
        t = fields.pop("t", None)
        tid = fields.pop("tid", None)
        if (t is not None and type(t) is not int) or (tid is not None and type(tid) is not int):
            raise TypeError(f"{kind} record: t and tid must be int (got {type(t).__name__}, {type(tid).__name__})")
        if self._strict:
            spec = F.KINDS.get(kind)
            if spec is None:
                raise ValueError(f"unknown record kind {kind!r} (known: {', '.join(F.KINDS)})")
            missing = spec.required - fields.keys()
            if missing:
                raise ValueError(f"{kind} record lacks field(s) {', '.join(sorted(missing))}")
        if tid is None:
            tid = _tid()
        with self._lock:
            self._check_open()
            self._owner = _ident()
            try:
                now = _mono()
                if t is None:
                    t = now - self._t0
                rec = self._pack([kind, t, tid, fields], kind)
                if len(rec) > F.MAX_BLOCK // 2:
                    raise ValueError(f"{kind} record of {len(rec)} bytes is too large: store big data with blob()")
                n = self._first + len(self._recs)
                if not self._recs:
                    self._buf_tmin = self._buf_tmax = t
                elif t < self._buf_tmin:
                    self._buf_tmin = t
                elif t > self._buf_tmax:
                    self._buf_tmax = t
                self._recs.append(rec)
                self._rec_bytes += len(rec)
                self._summary.add(kind, n, t, fields)
                if kind == "end":
                    self._ended = True
                if self._rec_bytes >= self._chunk_bytes or (
                        self._interval_ns and now - self._last_flush >= self._interval_ns):
                    self._flush_locked()
            finally:
                self._owner = None
        if self._pending_signal is not None and not self._closing:
            _deliver(self._pending_signal)
        return n

    def blob(self, data) -> BlobRef:
        """Store `data` once (by its 16-byte BLAKE2b hash) and return the reference to put in a record."""
        if self._inert:
            return BlobRef(F.blob_hash(data))
        if len(data) > F.MAX_BLOB:
            raise ValueError(f"blob of {len(data)} bytes exceeds the format's {F.MAX_BLOB}; split it")
        h = F.blob_hash(data)
        with self._lock:
            self._check_open()
            if h in self._blob_seen:
                self._blob_refs += 1
                return BlobRef(h)
            self._owner = _ident()
            try:
                self._blob_seen.add(h)
                head = F.BLOB_ENTRY.pack(h, len(data))
                self._blob_pending.append((h, self._blob_bytes + len(head), len(data)))
                self._blobs += (head, bytes(data))
                self._blob_bytes += len(head) + len(data)
                self._blob_total += len(data)
                if self._blob_bytes >= self._chunk_bytes:
                    self._flush_blobs()
            finally:
                self._owner = None
        if self._pending_signal is not None and not self._closing:
            _deliver(self._pending_signal)
        return BlobRef(h)

    def note(self, key: str, value) -> None:
        """Add a recorder-supplied entry to the footer's `notes` (e.g. memory-capture statistics)."""
        with self._lock:
            self._notes[key] = value

    def flush(self) -> None:
        """Write every buffered blob and record to the file now."""
        if self._inert:
            return
        with self._lock:
            self._check_open()
            self._owner = _ident()
            try:
                self._flush_locked()
            finally:
                self._owner = None
        if self._pending_signal is not None and not self._closing:
            _deliver(self._pending_signal)

    def close(self, status: str = "finalized", exit_status: int | None = None) -> None:
        """Write an `end` record (unless one was written), flush, and write the index and trailer.
        Idempotent: later calls do nothing."""
        if self._inert:
            return
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
            self._closer = _ident()
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)
        try:
            if not self._ended:
                self.write("end", status=status, exit_status=exit_status)
        finally:
            with self._lock:
                self._owner = _ident()
                try:
                    self._finish(status, exit_status)
                finally:
                    self._closed = True
                    self._owner = None
                    self._f.close()
        if self._pending_signal is not None:
            _deliver(self._pending_signal)

    def _finish(self, status, exit_status) -> None:
        self._flush_locked()
        s = self._summary
        footer = {
            "status": status, "exit_status": exit_status, "closed_ns": time.time_ns(),
            "records": self._first, "t_min": s.t_min, "t_max": s.t_max,
            "chunks": [list(c) for c in self._chunks], "counts": s.counts,
            "queues": s.queues, "allocations": s.allocations,
            "blobs": {"count": len(self._blob_seen), "bytes": self._blob_total, "refs": self._blob_refs},
            "blob_index": bytes(self._blob_index), "notes": self._notes,
        }
        index_off = self._pos
        block = F.make_block(F.KIND_INDEX, self._codec, self._pack(footer, "index"), tag=self._tag, level=self._level)
        self._write_out(block)
        head = F.TRAILER.pack(F.TRAILER_MAGIC, index_off, len(block), 0, 0)[:28]
        self._write_out(head + struct.pack("<I", zlib.crc32(head)))
        self.status = status

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Number of records written so far."""
        return self._first + len(self._recs)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.close()
        elif issubclass(et, KeyboardInterrupt):
            self.close("interrupted")
        else:
            if not self._closed:
                self.write("error", text="".join(traceback.format_exception(et, ev, tb)), type=et.__name__)
            self.close("error")

    # -- internals -----------------------------------------------------------------------------------
    def _check_open(self):
        if self._error is not None:
            raise TraceError(f"writing the trace failed: {self._error}", path=self.path) from self._error
        if self._closed:
            raise TraceError("the trace is already closed", path=self.path)

    def _pack(self, obj, what: str) -> bytes:
        try:
            return self._packer.pack(obj)
        except (TypeError, ValueError, OverflowError) as e:
            self._packer.reset()
            raise TypeError(f"{what} record: {e}") from e

    def _write_out(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._f.write(view):]
        except OSError as e:  # disk full, I/O error: every later write reports it too
            self._error = e
            raise TraceError(f"cannot write the trace: {e.strerror}", offset=self._pos, path=self.path) from None
        self._pos += len(data)

    def _flush_blobs(self) -> None:
        if not self._blobs:
            return
        off = self._pos
        raw = b"".join(self._blobs)
        self._write_out(F.make_block(F.KIND_BLOBS, self._codec, raw, tag=self._tag, level=self._level,
                                     count=len(self._blob_pending)))
        for h, doff, size in self._blob_pending:
            self._blob_index += F.BLOB_INDEX_ENTRY.pack(h, off, doff, size)
        self._blobs.clear()
        self._blob_pending.clear()
        self._blob_bytes = 0

    def _flush_locked(self) -> None:
        """Blobs first: a record on disk must be able to resolve its references."""
        self._flush_blobs()
        if self._recs:
            count = len(self._recs)
            raw = (b"\xdd" + struct.pack(">I", count)) + b"".join(self._recs)  # msgpack array32 header
            off = self._pos
            block = F.make_block(F.KIND_RECORDS, self._codec, raw, tag=self._tag, level=self._level,
                                 count=count, first=self._first)
            self._write_out(block)
            crc = struct.unpack_from("<I", block, 28)[0]
            self._chunks.append(F.ChunkInfo(off, self._first, count, self._buf_tmin, self._buf_tmax, crc))
            self._first += count
            self._recs.clear()
            self._rec_bytes = 0
        self._last_flush = _mono()

    def _flush_loop(self) -> None:
        """Flush a buffer that has waited `flush_interval`, even when no record arrives to trigger it."""
        interval = self._interval_ns / 1e9
        while not self._stop.wait(interval):
            with self._lock:
                if self._closed or self._inert:
                    return
                if (self._recs or self._blobs) and _mono() - self._last_flush >= self._interval_ns:
                    try:
                        self._flush_locked()
                    except TraceError:  # recorded in self._error: the next write() reports it
                        return


# -- fork: a child must not append to its parent's trace ----------------------------------------------
_writers_after_fork: "weakref.WeakSet[TraceWriter]" = weakref.WeakSet()


def _after_fork_in_child():
    for w in list(_writers_after_fork):
        w._inert = True


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- finalize on exit ------------------------------------------------------------------------------------
_STATUS_FOR_SIGNAL = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
_exit_writers: list[TraceWriter] = []
_previous_handlers: dict[int, object] = {}
_exit_state = {"status": "finalized"}


def _deliver(signum: int) -> None:
    """Act on SIGINT/SIGTERM once every writer's state is consistent. A Python handler that was
    there before us runs as it would have (SIGINT's default raises KeyboardInterrupt; the traces
    are finalized at exit, or not at all if the script catches it and goes on). A default, fatal
    disposition finalizes every trace, then re-raises the signal so the process dies of it."""
    for w in _exit_writers:
        w._pending_signal = None
    prev = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, None)
        return
    for w in _exit_writers:
        w.close(_STATUS_FOR_SIGNAL.get(signum, "terminated"))
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _on_signal(signum, frame):
    me = _ident()
    for w in _exit_writers:
        if w._owner == me or (w._closer == me and not w.closed):  # interrupted inside write() or
            w._pending_signal = signum                             # close(): finish that first
            return
    _deliver(signum)


def _excepthook(et, ev, tb):
    if issubclass(et, KeyboardInterrupt):
        _exit_state["status"] = "interrupted"
    else:
        _exit_state["status"] = "error"
        text = "".join(traceback.format_exception(et, ev, tb))
        for w in _exit_writers:
            try:
                if not w.closed:
                    w.write("error", text=text, type=et.__name__)
            except Exception:  # a broken trace must not hide the script's own traceback
                pass
    _excepthook_prev(et, ev, tb)


def _at_exit():
    status = _exit_state["status"]
    for w in _exit_writers:
        w.close(status, None if status == "finalized" else 1)


_excepthook_prev = sys.excepthook


def finalize_on_exit(writer: TraceWriter) -> TraceWriter:
    """Finalize `writer` on normal interpreter exit (status "finalized"), after an uncaught exception
    ("error", with an `error` record holding the traceback; "interrupted" for KeyboardInterrupt),
    and on SIGINT/SIGTERM, keeping each signal's previous behaviour. Call from the main thread."""
    global _excepthook_prev
    if not _exit_writers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            prev = signal.getsignal(sig)
            if prev in (signal.SIG_IGN, None):
                continue
            _previous_handlers[sig] = prev
            signal.signal(sig, _on_signal)
        _excepthook_prev = sys.excepthook
        sys.excepthook = _excepthook
        atexit.register(_at_exit)
    _exit_writers.append(writer)
    return writer
