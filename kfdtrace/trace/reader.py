"""TraceReader: open a trace from its footer index (or recover one that was never finalized) and
stream its records and blobs. Every tool reads traces through this class.

Opening reads only the preamble, the header, the trailer and the index block, so it costs the same
for ten records or ten million. Every read checks lengths against the file size and the format's
limits before allocating, and every failure is a TraceError carrying the byte offset.
"""
from __future__ import annotations

import bisect
import os
import stat
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from kfdtrace.errors import TraceError
from kfdtrace.trace import format as F
from kfdtrace.trace.format import BlobRef, ChunkInfo

DATA_START = F.PREAMBLE.size


@dataclass(slots=True)
class Record:
    """One record. `rec["field"]` reads a field; `rec.fields` is the whole map."""

    n: int
    kind: str
    t: int
    tid: int
    fields: dict

    def __getitem__(self, key: str):
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def get(self, key: str, default=None):
        return self.fields.get(key, default)


class _Block:
    __slots__ = ("offset", "kind", "count", "first", "tag", "crc", "end", "raw")

    def __init__(self, offset, kind, count, first, tag, crc, end, raw):
        self.offset, self.kind, self.count, self.first, self.tag, self.crc, self.end, self.raw = \
            offset, kind, count, first, tag, crc, end, raw


class TraceReader:
    """Read a trace. `progress(done_bytes, total_bytes)` is called during a recovery scan."""

    def __init__(self, path, *, progress: Callable[[int, int], None] | None = None):
        self.path = os.fspath(path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            raise TraceError(f"cannot open: {e.strerror}", path=self.path) from None
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):     # a directory opens read-only, then every read fails
            os.close(self._fd)
            self._fd = -1                    # __del__ must not close the number again
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise TraceError(f"cannot open: {what}, not a trace file", path=self.path)
        self.size = st.st_size
        self.warnings: list[str] = []
        self.finalized = False
        self.recovered = False
        self.recovered_upto: dict | None = None
        self.status = "recovered"
        self.exit_status: int | None = None
        self.notes: dict = {}
        self.blob_stats: dict = {}
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._blobs: dict[bytes, tuple[int, int, int]] | None = None
        self._blob_index_raw = b""
        try:
            self._open(progress)
        except BaseException:
            # close() marks the fd closed: __del__ runs on this half-built reader too, and closing
            # the number twice would close whatever the process opened under it since
            self.close()
            raise

    # -- opening ------------------------------------------------------------------------------------
    def _error(self, msg: str, offset: int | None) -> TraceError:
        return TraceError(msg, offset=offset, path=self.path)

    def _bare(self, e: TraceError) -> str:
        """An error's message without the path (for messages that already name the file)."""
        return str(e).removeprefix(f"{self.path}: ")

    def _open(self, progress) -> None:
        if self.size < DATA_START + F.BLOCK.size:
            raise self._error(f"file of {self.size} bytes is too short to be a kfdtrace trace", 0)
        magic, major, minor, _flags = F.PREAMBLE.unpack(self._pread(0, DATA_START))
        if magic != F.MAGIC:
            raise self._error(f"not a kfdtrace trace (magic {magic!r}, expected {F.MAGIC!r})", 0)
        self.version = (major, minor)
        mine = f"{F.FORMAT_MAJOR}.{F.FORMAT_MINOR}"
        if major > F.FORMAT_MAJOR:
            raise self._error(f"trace format {major}.{minor} is newer than this kfdtrace reads "
                              f"({F.FORMAT_MAJOR}.x, format {mine}); upgrade kfdtrace", 8)
        if major < F.FORMAT_MAJOR:
            raise self._error(f"trace format {major}.{minor} is older than this kfdtrace reads "
                              f"({F.FORMAT_MAJOR}.x, format {mine})", 8)
        if minor > F.FORMAT_MINOR:
            self.warnings.append(f"trace format {major}.{minor} is newer than this reader's {mine}: "
                                 "reading it, but records, fields or blocks it added are skipped")
        self._tag = None
        hb = self._read_block(DATA_START)
        if hb.kind != F.KIND_HEADER:
            raise self._error(f"expected the header block, found a {hb.kind!r} block", DATA_START)
        header = self._unpack(hb.raw, DATA_START, "header")
        if not isinstance(header, dict):
            raise self._error("header block is not a map", DATA_START)
        self.header: dict = header
        self._tag = hb.tag
        self._data_start = hb.end

        footer_off, why = self._find_index()
        if footer_off is not None:
            try:
                self._load_footer(footer_off)
                self.finalized = True
            except TraceError as e:
                why = f"the index is unreadable ({self._bare(e)})"
        if not self.finalized:
            self._recover(progress, why)
        self._firsts = [c.first for c in self.chunks]
        unknown = sorted(k for k in self.counts if k not in F.KINDS)
        for k in unknown:
            self.warnings.append(f"skipping {self.counts[k]} record(s) of kind {k!r}, unknown to this "
                                 f"reader (format {mine}); written by a newer kfdtrace?")

    def _find_index(self) -> tuple[int | None, str]:
        """Offset of the index block named by a valid trailer, or None and why not."""
        if self.size < self._data_start + F.BLOCK.size + F.TRAILER.size:
            return None, "the file ends before an index could be written"
        tail = self._pread(self.size - F.TRAILER.size, F.TRAILER.size)
        magic, off, size, _res, crc = F.TRAILER.unpack(tail)
        if magic != F.TRAILER_MAGIC:
            return None, "no trailer: the recorder did not finalize the trace"
        if zlib.crc32(tail[:28]) != crc:
            return None, "the trailer's checksum is wrong"
        if off < self._data_start or off + size + F.TRAILER.size != self.size:
            return None, f"the trailer points at an impossible index (byte {off}, {size} bytes)"
        return off, ""

    def _load_footer(self, off: int) -> None:
        b = self._read_block(off)
        if b.kind != F.KIND_INDEX:
            raise self._error(f"expected the index block, found a {b.kind!r} block", off)
        f = self._unpack(b.raw, off, "index")

        def need(cond, what):
            if not cond:
                raise self._error(f"index block: bad {what}", off)

        need(isinstance(f, dict), "structure (not a map)")
        chunks, nxt, prev_end = [], 0, self._data_start
        need(isinstance(f.get("chunks"), list), "chunk list")
        for e in f["chunks"]:
            need(isinstance(e, list) and len(e) >= 6 and all(type(x) is int for x in e[:6]), "chunk entry")
            c = ChunkInfo(*e[:6])
            need(prev_end <= c.offset and c.offset + F.BLOCK.size <= off, f"chunk offset {c.offset}")
            need(c.first == nxt and 0 < c.count <= F.MAX_BLOCK, f"chunk numbering at byte {c.offset}")
            chunks.append(c)
            nxt += c.count
            prev_end = c.offset + F.BLOCK.size
        need(f.get("records") == nxt, "record count")
        counts = f.get("counts")
        need(isinstance(counts, dict) and all(type(v) is int for v in counts.values()), "counts")
        need(sum(counts.values()) == nxt, "counts (they do not add up to the record count)")
        for key in ("queues", "allocations"):
            need(isinstance(f.get(key), list) and all(isinstance(x, dict) for x in f[key]), key)
        bi = f.get("blob_index", b"")
        need(isinstance(bi, bytes) and len(bi) % F.BLOB_INDEX_ENTRY.size == 0, "blob index")
        for key in ("t_min", "t_max", "exit_status"):
            need(f.get(key) is None or type(f.get(key)) is int, key)
        need(isinstance(f.get("status", ""), str), "status")
        self.chunks: list[ChunkInfo] = chunks
        self.counts: dict[str, int] = counts
        self.queues: list[dict] = f["queues"]
        self.allocations: list[dict] = f["allocations"]
        self.t_min, self.t_max = f.get("t_min"), f.get("t_max")
        self.status = f.get("status", "finalized")
        self.exit_status = f.get("exit_status")
        self.notes = f.get("notes") if isinstance(f.get("notes"), dict) else {}
        self.blob_stats = f.get("blobs") if isinstance(f.get("blobs"), dict) else {}
        self._blob_index_raw = bi
        self._index_offset = off

    def _recover(self, progress, why: str) -> None:
        """Rebuild the index by scanning blocks; stop at the first one that cannot be trusted."""
        self.recovered = True
        summary, chunks, blobs = F.Summary(), [], {}
        off = good_end = self._data_start
        nxt = 0
        reason = "end of file"
        while off < self.size:
            if progress is not None:
                progress(off, self.size)
            try:
                b = self._read_block(off)
                if b.kind == F.KIND_RECORDS:
                    if b.first != nxt:
                        raise self._error(f"records block starts at record {b.first}, expected {nxt}", off)
                    items = self._items(b)
                    tmin = tmax = items[0][1] if items else 0
                    for j, (kind, t, tid, fields) in enumerate(items):
                        summary.add(kind, nxt + j, t, fields)
                        tmin, tmax = min(tmin, t), max(tmax, t)
                    chunks.append(ChunkInfo(off, b.first, b.count, tmin, tmax, b.crc))
                    nxt += b.count
                elif b.kind == F.KIND_BLOBS:
                    for h, doff, size in self._blob_entries(b):
                        blobs.setdefault(h, (off, doff, size))
                elif b.kind == F.KIND_HEADER:
                    raise self._error("a second header block", off)
                elif b.kind != F.KIND_INDEX:  # an index without its trailer: its content is rebuilt
                    self.warnings.append(f"skipped a block of unknown kind {b.kind!r} at byte {off}")
            except TraceError as e:
                reason = self._bare(e)
                break
            off = good_end = b.end
        if progress is not None:
            progress(self.size, self.size)
        self.chunks, self.counts = chunks, summary.counts
        self.queues, self.allocations = summary.queues, summary.allocations
        self.t_min, self.t_max = summary.t_min, summary.t_max
        self._blobs = blobs
        self.blob_stats = {"count": len(blobs), "bytes": sum(v[2] for v in blobs.values())}
        self.recovered_upto = {"offset": good_end, "record": nxt - 1 if nxt else None, "reason": reason}
        self.warnings.append(f"no usable index ({why}); recovered {nxt} record(s) by scanning, up to byte "
                             f"{good_end} of {self.size}; scanning stopped: {reason}")

    # -- low-level reads ----------------------------------------------------------------------------
    def _pread(self, offset: int, size: int) -> bytes:
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as e:                 # EIO from a bad disk, a file vanishing under NFS, ...
            raise self._error(f"cannot read {size} bytes: {e.strerror}", offset) from None
        if len(data) != size:
            raise self._error(f"file ends after {len(data)} of {size} bytes", offset + len(data))
        return data

    def _read_block(self, off: int) -> _Block:
        if off + F.BLOCK.size > self.size:
            raise self._error(f"truncated block header ({self.size - off} of {F.BLOCK.size} bytes)", off)
        head = self._pread(off, F.BLOCK.size)
        magic, kind, codec, stored, raw_size, count, first, tag, crc = F.BLOCK.unpack(head)
        if magic != F.BLOCK_MAGIC:
            raise self._error(f"no block here (magic {magic!r}, expected {F.BLOCK_MAGIC!r})", off)
        end = off + F.BLOCK.size + stored
        if stored > F.MAX_BLOCK or raw_size > min(F.MAX_BLOCK, stored * F.MAX_RATIO.get(codec, 1) + 64):
            raise self._error(f"block claims {stored} stored / {raw_size} raw bytes, beyond the format's limits",
                              off)
        if end > self.size:
            raise self._error(f"truncated block: {stored} payload bytes claimed, "
                              f"{self.size - off - F.BLOCK.size} present", off)
        payload = self._pread(off + F.BLOCK.size, stored)
        if F.block_crc(head[:28], payload) != crc:
            raise self._error(f"bad CRC in {F.BLOCK_KINDS.get(kind, repr(kind))} block", off)
        if self._tag is not None and tag != self._tag:
            raise self._error(f"block belongs to another trace (tag {tag:08x}, this trace's is {self._tag:08x})",
                              off)
        try:
            raw = F.decompress(codec, payload, raw_size)
        except Exception as e:  # zlib.error, ValueError, a zstd error: all mean a bad block
            raise self._error(f"cannot decompress block ({F.CODEC_NAMES.get(codec, codec)}): {e}", off) from None
        return _Block(off, kind, count, first, tag, crc, end, raw)

    def _unpack(self, raw: bytes, off: int, what: str):
        try:
            return F.unpack(raw)
        except Exception as e:  # msgpack raises many types (ExtraData, FormatError, ValueError, ...)
            raise self._error(f"undecodable {what} block: {type(e).__name__}: {e}", off) from None

    def _items(self, b: _Block) -> list:
        """Decode a records block into its [kind, t, tid, fields] items, checking their shape."""
        items = self._unpack(b.raw, b.offset, "records")
        if type(items) is not list or len(items) != b.count:
            raise self._error(f"records block holds {len(items) if type(items) is list else 'no list of'} "
                              f"records, its header says {b.count}", b.offset)
        for j, it in enumerate(items):
            if not (type(it) is list and len(it) == 4 and type(it[0]) is str and type(it[1]) is int
                    and (type(it[2]) is int or it[2] is None) and type(it[3]) is dict):
                raise self._error(f"record {b.first + j} is malformed", b.offset)
        return items

    def _blob_entries(self, b: _Block) -> Iterator[tuple[bytes, int, int]]:
        raw, pos, es = b.raw, 0, F.BLOB_ENTRY.size
        for _ in range(b.count):
            if pos + es > len(raw):
                raise self._error("blob block ends inside an entry header", b.offset)
            h, size = F.BLOB_ENTRY.unpack_from(raw, pos)
            if pos + es + size > len(raw):
                raise self._error(f"blob {h.hex()} of {size} bytes overruns its block", b.offset)
            yield h, pos + es, size
            pos += es + size
        if pos != len(raw):
            raise self._error("blob block has bytes after its last entry", b.offset)

    def _cached(self, key, load):
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = load()
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        return value

    def _chunk_items(self, i: int, cache: bool = True) -> list:
        c = self.chunks[i]

        def load():
            b = self._read_block(c.offset)
            if b.kind != F.KIND_RECORDS or b.first != c.first or b.count != c.count or b.crc != c.crc:
                raise self._error(f"block does not match the index entry for records "
                                  f"{c.first}..{c.first + c.count - 1}", c.offset)
            return self._items(b)
        return self._cached(("R", i), load) if cache else load()

    # -- public API ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.chunks[-1].first + self.chunks[-1].count if self.chunks else 0

    @property
    def duration_ns(self) -> int:
        return self.t_max or 0

    def records(self, kinds: Iterable[str] | str | None = None, start: int | None = None,
                stop: int | None = None, *, include_unknown: bool = False) -> Iterator[Record]:
        """Stream records with start <= n < stop, optionally only of `kinds`. Seeks with the index:
        only blocks holding the range are read. Unknown kinds are skipped (see `warnings`)."""
        total = len(self)
        start = 0 if start is None else max(0, start)
        stop = total if stop is None else min(stop, total)
        if isinstance(kinds, str):
            kinds = {kinds}
        elif kinds is not None:
            kinds = set(kinds)
        known = F.KINDS
        i = max(0, bisect.bisect_right(self._firsts, start) - 1)
        while i < len(self.chunks) and self.chunks[i].first < stop:
            c = self.chunks[i]
            items = self._chunk_items(i, cache=False)
            for j in range(max(0, start - c.first), min(stop - c.first, c.count)):
                kind, t, tid, fields = items[j]
                if (kinds is None or kind in kinds) and (include_unknown or kind in known):
                    yield Record(c.first + j, kind, t, tid, fields)
            i += 1

    __iter__ = records

    def record(self, n: int) -> Record:
        """Record number `n` (of any kind, even one this reader does not know)."""
        if not 0 <= n < len(self):
            raise IndexError(f"record {n} out of range (trace has {len(self)})")
        i = bisect.bisect_right(self._firsts, n) - 1
        c = self.chunks[i]
        kind, t, tid, fields = self._chunk_items(i)[n - c.first]
        return Record(n, kind, t, tid, fields)

    def _blob_map(self) -> dict[bytes, tuple[int, int, int]]:
        if self._blobs is None:
            self._blobs = {h: (off, doff, size) for h, off, doff, size
                           in F.BLOB_INDEX_ENTRY.iter_unpack(self._blob_index_raw)}
        return self._blobs

    def has_blob(self, h: bytes) -> bool:
        return bytes(h) in self._blob_map()

    def blob(self, h: bytes) -> bytes:
        """The contents of blob `h` (a BlobRef from a record, or its 16-byte hash)."""
        h = bytes(h)
        ent = self._blob_map().get(h)
        if ent is None:
            where = self._index_offset if self.finalized else self.recovered_upto["offset"]
            raise self._error(f"blob {h.hex()} is not in this trace (not indexed, nor in a block before "
                              f"byte {where})", where)
        off, doff, size = ent
        raw = self._cached(("B", off), lambda: self._blob_block(off))
        es = F.BLOB_ENTRY.size
        if doff < es or doff + size > len(raw) or F.BLOB_ENTRY.unpack_from(raw, doff - es) != (h, size):
            raise self._error(f"blob {h.hex()} is not where the index says", off)
        data = raw[doff:doff + size]
        if F.blob_hash(data) != h:
            raise self._error(f"blob {h.hex()} content does not match its hash", off)
        return data

    def resolve(self, value) -> bytes:
        """The bytes a field holds, whether inline or a blob reference (e.g. `submit.dwords`)."""
        return self.blob(value) if isinstance(value, BlobRef) else bytes(value)

    def memory_writes(self, rec: Record) -> list[tuple[int, bytes]]:
        """The (GPU VA, bytes) pieces a `memwrite` or `memwrite_runs` record stores, in address
        order (a memwrite is one piece; memwrite_runs one per run, sliced from its `data`)."""
        f = rec.fields
        try:
            data = self.resolve(f["data"])
            va = f["va"]
            if rec.kind == "memwrite":
                return [(va, data)]
            if rec.kind != "memwrite_runs" or type(va) is not int:
                raise ValueError(f"not a memory write ({rec.kind})")
            runs = F.decode_runs(f["runs"], len(data))
            if f["size"] != len(data):
                raise ValueError(f"size {f['size']} but {len(data)} bytes of data")
        except (KeyError, TypeError, ValueError) as e:
            where = self.chunks[bisect.bisect_right(self._firsts, rec.n) - 1].offset if self.chunks else None
            raise self._error(f"record {rec.n} ({rec.kind}): {type(e).__name__}: {e}", where) from None
        out, pos = [], 0
        for lo, hi in runs:
            out.append((va + lo, data[pos:pos + hi - lo]))
            pos += hi - lo
        return out

    def _blob_block(self, off: int) -> bytes:
        b = self._read_block(off)
        if b.kind != F.KIND_BLOBS:
            raise self._error(f"expected a blob block, found a {b.kind!r} block", off)
        return b.raw

    def info(self) -> dict:
        """Everything `kfdtrace info` shows, as plain data."""
        h = self.header
        return {
            "path": self.path, "size": self.size,
            "format": f"{self.version[0]}.{self.version[1]}",
            "tool_version": h.get("tool_version"),
            "status": self.status, "finalized": self.finalized, "recovered": self.recovered,
            "recovered_upto": self.recovered_upto, "exit_status": self.exit_status,
            "records": len(self), "chunks": len(self.chunks), "duration_ns": self.duration_ns,
            "counts": dict(sorted(self.counts.items(), key=lambda kv: -kv[1])),
            "unknown_kinds": sorted(k for k in self.counts if k not in F.KINDS),
            "queues": self.queues, "allocations": self.allocations,
            "blobs": self.blob_stats, "gpus": gpus_of(h),
            "memory_capture": h.get("memory_capture") or self.notes.get("memory_capture"),
            "header": h, "notes": self.notes, "warnings": list(self.warnings),
        }

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def gpus_of(header: dict) -> list[dict]:
    """The GPUs a header describes: its `gpus` list, or the GPU nodes (gpu_id != 0) of `topology`."""
    gpus = header.get("gpus")
    if isinstance(gpus, list):
        return [g for g in gpus if isinstance(g, dict)]
    nodes = (header.get("topology") or {}).get("nodes") if isinstance(header.get("topology"), dict) else None
    out = []
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        if isinstance(node, dict) and node.get("gpu_id"):
            props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
            out.append({"gpu_id": node["gpu_id"], "node": node.get("node", i), "name": node.get("name"),
                        "gfx_target_version": props.get("gfx_target_version")})
    return out
