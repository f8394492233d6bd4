"""TraceWriter: buffers records and blobs, flushes them as checksummed blocks, finalizes with an index.

The file is valid to a reader at every moment: the header block is written at construction, each
flush appends whole blocks (blobs before the records that reference them), and `close()` appends
the index block and the trailer. A process killed outright therefore loses only what it had not
flushed; `flush_interval` bounds that to about half a second even when the recorder is idle.
"""
from __future__ import annotations

import atexit
import collections
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
    record may stay buffered; `strict` makes `write()` refuse unknown kinds and missing fields;
    `on_error(TraceError)`, if given, is called instead of raising when `write()`/`write_data()`
    find the trace closed or unwritable (they return -1: a recorder must not break its program).

    `background=True` moves the encoding (compression, CRC) and writing of blocks that hold
    `write_data`'s large data (memory captures) to a writer thread, off the thread that records:
    a flush hands them over and returns, the thread writes them in order (blobs before the
    records that reference them, whole blocks one after another, so a kill still leaves a
    readable prefix), and `flush()`/`close()` wait until it has. Blocks of records alone are
    encoded in place unless blocks wait for the thread (order): while the thread runs Python,
    each call of the recording thread that releases the GIL (ctypes, numpy, syscalls) ends in a
    wait for it, which costs more than compressing a block of records. For the same reason the
    thread makes few such calls per block, and records are packed where they are written.
    Waking the thread costs tens of microseconds (an inter-processor interrupt; more in a VM), so
    a hand-over does not wake it: it writes what it was handed when it wakes by itself, every
    `flush_interval` (a killed recorder loses at most about twice that), when `wake()` is called
    (where the recording thread hands the GPU work or is about to wait anyway), or at once when
    `wake_bytes` are waiting. At most `max_pending` bytes wait; a writer that gets further ahead
    blocks until they are written.
    """

    def __init__(self, path, header: dict, *, codec: str = "zlib", chunk_bytes: int = 1 << 20,
                 flush_interval: float | None = 0.5, level: int = 1, strict: bool = True,
                 background: bool = False, wake_bytes: int = 16 << 20, max_pending: int = 64 << 20,
                 on_error=None):
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
        self._on_error = on_error            # called with the TraceError instead of raising it
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)  # the writer thread's queue (background mode)
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
        # record buffer: packed records (bytes) and, as separate pieces, the inline data of
        # write_data(); n of its first record = self._first, of the next = _first + _nrec
        self._recs: list = []
        self._tail = 0                       # _recs[_tail:] are single records, not yet joined
        self._nrec = 0
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
        # background mode: blocks handed to the writer thread, not yet written
        self._jobs: collections.deque = collections.deque()
        self.pending = self._jobs            # public: blocks handed to the writer thread, unwritten
        self._queued = 0                     # payload bytes in _jobs and in the job being written
        self._busy = False
        self._max_pending = max(1, int(max_pending))
        self._wake_bytes = max(1, min(int(wake_bytes), self._max_pending))
        self._thread: threading.Thread | None = None

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
        self._last_flush = self._last_write = self._t0
        self._write_out(F.PREAMBLE.pack(F.MAGIC, F.FORMAT_MAJOR, F.FORMAT_MINOR, 0) + head_block)
        _writers_after_fork.add(self)
        self._stop = threading.Event()
        self._timer = None
        if background:
            self._thread = threading.Thread(target=self._work, name="kfdtrace-trace-writer", daemon=True)
            self._thread.start()
        elif self._interval_ns:
            self._timer = threading.Thread(target=self._flush_loop, name="kfdtrace-trace-flush", daemon=True)
            self._timer.start()

    # -- public API --------------------------------------------------------------------------------
    def now(self) -> int:
        """Nanoseconds since the trace started (the clock of every record's `t`)."""
        return _mono() - self._t0

    def write(self, kind: str, /, **fields) -> int:
        """Append one record and return its number. `t=` and `tid=` override the stamped values.
        (The recorder calls this for every record: it is written for speed, as one frame.)"""
        if self._inert:
            return -1
        t = fields.pop("t", None)
        tid = fields.pop("tid", None)
        if (t is not None and type(t) is not int) or (tid is not None and type(tid) is not int):
            raise TypeError(f"{kind} record: t and tid must be int (got {type(t).__name__}, {type(tid).__name__})")
        if self._strict:
            self._check_fields(kind, fields)
        if tid is None:
            tid = _tid()
        with self._lock:
            if self._error is not None or self._closed:
                if self._on_error is None:
                    self._check_open()
                return self._failed()
            self._owner = _ident()
            try:
                now = _mono()
                if t is None:
                    t = now - self._t0
                nrec = self._nrec
                n = self._first + nrec
                if not nrec:
                    self._buf_tmin = self._buf_tmax = t
                elif t > self._buf_tmax:
                    self._buf_tmax = t
                elif t < self._buf_tmin:
                    self._buf_tmin = t
                try:
                    rec = self._packer.pack([kind, t, tid, fields])
                except (TypeError, ValueError, OverflowError) as e:
                    self._packer.reset()
                    raise TypeError(f"{kind} record: {e}") from e
                size = len(rec)
                if size > _MAX_RECORD:
                    raise ValueError(f"{kind} record of {size} bytes is too large: store big data with blob()")
                recs = self._recs
                recs.append(rec)
                if len(recs) - self._tail >= _COALESCE:     # join the last records: thousands of
                    recs[self._tail:] = (b"".join(recs[self._tail:]),)   # small objects alive
                    self._tail = len(recs)                  # would take fresh memory (page faults)
                self._summary.add(kind, n, t, fields)
                self._nrec = nrec + 1
                size += self._rec_bytes
                self._rec_bytes = size
                if kind == "end":
                    self._ended = True
                self._last_write = now
                if size >= self._chunk_bytes or (self._interval_ns and now - self._last_flush >= self._interval_ns):
                    self._flush_or_fail()
            finally:
                self._owner = None
        if self._pending_signal is not None and not self._closing:
            _deliver(self._pending_signal)
        return n

    def write_data(self, kind: str, data, /, **fields) -> int:
        """Append a record whose last field, `data`, holds `data` (any contiguous buffer: bytes,
        a numpy array, a memoryview) inline as msgpack bin. Large data is not copied here: the
        writer keeps a reference and copies it into the block when that is encoded (on the
        writer thread in background mode), so the caller must never change `data` afterwards.
        The record is byte for byte what `write(kind, **fields, data=bytes(data))` stores."""
        if self._inert:
            return -1
        if "data" in fields or "t" in fields or "tid" in fields:
            raise ValueError(f"{kind} record: write_data() takes no data=, t= or tid= field")
        big = memoryview(data)
        if big.ndim != 1 or big.format != "B":
            big = big.cast("B")             # raises TypeError unless C-contiguous
        fields["data"] = b""                # packed as c4 00 at the end: replaced by the header
        if self._strict:
            self._check_fields(kind, fields)
        tid = _tid()
        with self._lock:
            if self._error is not None or self._closed:
                if self._on_error is None:
                    self._check_open()
                return self._failed()
            self._owner = _ident()
            try:
                now = _mono()
                t = now - self._t0
                rec = self._pack([kind, t, tid, fields], kind)
                size = len(rec) + len(big)
                if size > F.MAX_BLOCK // 2:
                    raise ValueError(f"{kind} record of {size} bytes is too large: store big data with blob()")
                n = self._first + self._nrec
                if not self._nrec:
                    self._buf_tmin = self._buf_tmax = t
                elif t > self._buf_tmax:
                    self._buf_tmax = t
                head = rec[:-2] + _bin_header(len(big))
                if len(big) < _SEPARATE:
                    self._recs.append(head + big)
                else:
                    self._recs += (head, big)
                    self._tail = len(self._recs)
                self._summary.add(kind, n, t, fields)
                self._nrec += 1
                self._rec_bytes += size
                self._last_write = now
                if self._rec_bytes >= self._chunk_bytes or (
                        self._interval_ns and now - self._last_flush >= self._interval_ns):
                    self._flush_or_fail()
            finally:
                self._owner = None
        if self._pending_signal is not None and not self._closing:
            _deliver(self._pending_signal)
        return n

    def _check_fields(self, kind: str, fields: dict) -> None:
        spec = F.KINDS.get(kind)
        if spec is None:
            raise ValueError(f"unknown record kind {kind!r} (known: {', '.join(F.KINDS)})")
        missing = spec.required - fields.keys()
        if missing:
            raise ValueError(f"{kind} record lacks field(s) {', '.join(sorted(missing))}")

    def _failed(self) -> int:
        """The trace is closed or broken and `on_error` was given: tell it, return -1."""
        try:
            self._check_open()
        except TraceError as e:
            self._on_error(e)
        return -1

    def _flush_or_fail(self) -> None:
        try:
            self._flush_locked()
        except TraceError as e:         # synchronous mode: the block could not be written
            if self._on_error is None:
                raise
            self._on_error(e)

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
                    self._hand_over(self._take_blobs())
            finally:
                self._owner = None
        if self._pending_signal is not None and not self._closing:
            _deliver(self._pending_signal)
        return BlobRef(h)

    def wake(self) -> None:
        """Background mode: have the writer thread start on the blocks handed over to it now,
        rather than when it next wakes by itself. Worth calling where the calling thread is
        about to wait anyway (the wake-up costs it tens of microseconds); free when nothing
        is waiting to be written."""
        if self._jobs and self._thread is not None and not self._inert:
            with self._cv:
                self._cv.notify_all()

    def note(self, key: str, value) -> None:
        """Add a recorder-supplied entry to the footer's `notes` (e.g. memory-capture statistics)."""
        if self._inert:
            return
        with self._lock:
            self._notes[key] = value

    def flush(self) -> None:
        """Write every buffered blob and record to the file now (in background mode: wait until
        the writer thread has written them)."""
        if self._inert:
            return
        with self._lock:
            self._check_open()
            self._owner = _ident()
            try:
                self._flush_locked()
                self._drain()
                self._check_open()
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
                    self._flush_locked()
                    self._drain()
                    self._thread = None         # the writer thread has nothing left: finish here
                    self._cv.notify_all()       # and let it see that it is done
                    if self._error is not None:
                        raise TraceError(f"writing the trace failed: {self._error}", path=self.path)
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
        return self._first + self._nrec

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

    def _write_out(self, data) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._f.write(view):]
        except OSError as e:  # disk full, I/O error: every later write reports it too
            self._error = e
            raise TraceError(f"cannot write the trace: {e.strerror}", offset=self._pos, path=self.path) from None
        self._pos += len(data)

    def _write_parts(self, parts: list) -> None:
        """Write the pieces of a block with as few system calls as the kernel allows (writev)."""
        views = [memoryview(p).cast("B") for p in parts]
        total = sum(len(v) for v in views)
        fd = self._f.fileno()
        try:
            done = 0
            while views:
                n = os.writev(fd, views)
                done += n
                while views and n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                if views and n:
                    views[0] = views[0][n:]
        except OSError as e:  # disk full, I/O error: every later write reports it too
            self._error = e
            raise TraceError(f"cannot write the trace: {e.strerror}", offset=self._pos + done,
                             path=self.path) from None
        self._pos += total

    # Buffers become jobs (a function writing one block, its arguments, their size) under the
    # lock; a job runs right there (synchronous mode) or on the writer thread, in order.
    def _take_blobs(self) -> list:
        if not self._blobs:
            return []
        job = (self._write_blobs, (self._blobs, self._blob_pending), self._blob_bytes, False)
        self._blobs, self._blob_pending, self._blob_bytes = [], [], 0
        return [job]

    def _take_records(self) -> list:
        if not self._nrec:
            return []
        bulky = any(type(r) is memoryview for r in self._recs)        # write_data's large data
        job = (self._write_records, (self._recs, self._nrec, self._first, self._buf_tmin, self._buf_tmax),
               self._rec_bytes, bulky)
        self._first += self._nrec
        self._recs, self._nrec, self._rec_bytes, self._tail = [], 0, 0, 0
        return [job]

    def _flush_locked(self) -> None:
        """Blobs first: a record on disk must be able to resolve its references."""
        self._hand_over(self._take_blobs() + self._take_records())
        self._last_flush = _mono()

    def _hand_over(self, jobs: list) -> None:
        """Write the jobs' blocks here (synchronous mode; or in background mode when they hold
        no large data and nothing waits for the writer thread: encoding a block of records costs
        the recording thread less than what a second thread running Python costs it, a wait for
        the GIL after each of its calls that release it), or queue them for the writer thread."""
        if not jobs:
            return
        if self._thread is None or (not self._jobs and not self._busy and not any(j[3] for j in jobs)
                                    and threading.current_thread() is not self._thread):
            for fn, args, _, _ in jobs:
                fn(*args)
            return
        self._jobs.extend(jobs)
        for j in jobs:
            self._queued += j[2]
        if self._queued >= self._wake_bytes:
            self._cv.notify_all()
            if threading.current_thread() is not self._thread:
                while self._queued > self._max_pending and self._error is None and self._thread is not None:
                    self._cv.wait()

    def _drain(self) -> None:
        """Wait (lock held) until the writer thread has written every block handed to it."""
        while (self._jobs or self._busy) and self._thread is not None and self._thread.is_alive():
            self._cv.notify_all()
            self._cv.wait(0.5)

    def _write_blobs(self, parts: list, pending: list) -> None:
        off = self._pos
        out, _ = F.block_parts(F.KIND_BLOBS, self._codec, parts, tag=self._tag, level=self._level,
                               count=len(pending))
        self._write_parts(out)
        for h, doff, size in pending:
            self._blob_index += F.BLOB_INDEX_ENTRY.pack(h, off, doff, size)

    def _write_records(self, recs: list, count: int, first: int, tmin: int, tmax: int) -> None:
        """Encode and write one R block of packed records (bytes, joined by the hundred) and
        write_data's large data (memoryviews, never copied: `format.block_parts`)."""
        parts = [b"\xdd" + struct.pack(">I", count), *recs]          # msgpack array32 header
        off = self._pos
        out, crc = F.block_parts(F.KIND_RECORDS, self._codec, parts, tag=self._tag, level=self._level,
                                 count=count, first=first)
        self._write_parts(out)
        self._chunks.append(F.ChunkInfo(off, first, count, tmin, tmax, crc))

    def _work(self) -> None:
        """The writer thread: write handed-over blocks in order; flush a buffer that has waited
        `flush_interval`, even when no record arrives to trigger it."""
        cv = self._cv
        period = self._interval_ns / 1e9 if self._interval_ns else 1.0
        while True:
            with cv:
                while not self._jobs:
                    if self._thread is not threading.current_thread() or self._inert:
                        return
                    now = _mono()
                    if self._interval_ns and (self._nrec or self._blobs) and not self._closing \
                            and now - self._last_flush >= self._interval_ns \
                            and now - self._last_write >= self._interval_ns // 2:
                        self._flush_locked()    # only for an idle writer: a busy one flushes
                        continue                # itself, without this thread's GIL traffic
                    cv.wait(period)
                fn, args, size, _ = self._jobs.popleft()
                self._busy = True
            try:
                if self._error is None:
                    fn(*args)
            except TraceError:
                pass                    # in self._error: the next call of the recording thread reports it
            except BaseException as e:  # a bug must not leave the recorder waiting forever
                self._error = e
            finally:
                fn = args = None        # the data of write_data() is free once written
                with cv:
                    self._busy = False
                    self._queued -= size
                    cv.notify_all()

    def _flush_loop(self) -> None:
        """Flush a buffer that has waited `flush_interval`, even when no record arrives to trigger it."""
        interval = self._interval_ns / 1e9
        while not self._stop.wait(interval):
            with self._lock:
                if self._closed or self._inert:
                    return
                if (self._nrec or self._blobs) and _mono() - self._last_flush >= self._interval_ns:
                    try:
                        self._flush_locked()
                    except TraceError:  # recorded in self._error: the next write() reports it
                        return


#: write_data() keeps data of at least this many bytes as a separate piece (not copied on write)
_SEPARATE = 64 << 10
#: buffered records are joined by this many
_COALESCE = 256
#: the largest record write() takes (big data goes in blobs or write_data)
_MAX_RECORD = F.MAX_BLOCK // 2


def _bin_header(n: int) -> bytes:
    """The msgpack bin header msgpack itself uses for n bytes (the shortest form)."""
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


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
