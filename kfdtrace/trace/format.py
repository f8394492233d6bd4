"""Trace format constants, block layouts, codecs, the record-kind schema and the index summary.

Everything here is shared by the writer and the reader so that both sides agree by construction;
`docs/trace-format.md` is the specification this module implements.
"""
from __future__ import annotations

import gc
import hashlib
import struct
import zlib
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, NamedTuple

import msgpack

FORMAT_MAJOR = 1
FORMAT_MINOR = 1
FORMAT_VERSION = (FORMAT_MAJOR, FORMAT_MINOR)
MAGIC = b"KFDTRACE"

#: preamble: magic, major, minor, flags
PREAMBLE = struct.Struct("<8sHHI")
#: block header: magic "KB", kind, codec, stored_size, raw_size, count, first, trace tag, crc32
BLOCK = struct.Struct("<2scBIIIQII")
BLOCK_MAGIC = b"KB"
#: trailer: magic, index_offset, index_size, reserved, crc32
TRAILER = struct.Struct("<8sQQII")
TRAILER_MAGIC = b"KFDTEND\0"
#: one blob-index entry (footer `blob_index`): hash, block_offset, data_offset, size
BLOB_INDEX_ENTRY = struct.Struct("<16sQII")
#: blob entry header inside a B block: hash, size
BLOB_ENTRY = struct.Struct("<16sI")

KIND_HEADER, KIND_RECORDS, KIND_BLOBS, KIND_INDEX = b"H", b"R", b"B", b"I"
BLOCK_KINDS = {KIND_HEADER: "header", KIND_RECORDS: "records", KIND_BLOBS: "blobs", KIND_INDEX: "index"}

MAX_BLOCK = 1 << 30
MAX_BLOB = MAX_BLOCK - 64
HASH_SIZE = 16
EXT_BLOB = 1  # msgpack ext type of a blob reference

CODEC_NONE, CODEC_ZLIB, CODEC_ZSTD = 0, 1, 2
CODECS = {"none": CODEC_NONE, "zlib": CODEC_ZLIB, "zstd": CODEC_ZSTD}
CODEC_NAMES = {v: k for k, v in CODECS.items()}


# -- codecs --------------------------------------------------------------------------------------
def _zstd_module():
    """The zstd implementation available here (`zstandard`, or 3.14's `compression.zstd`), or None."""
    try:
        import zstandard
        return zstandard
    except ImportError:
        pass
    try:
        from compression import zstd  # type: ignore[import-not-found]
        return zstd
    except ImportError:
        return None


HAVE_ZSTD = _zstd_module() is not None


def compress(codec: int, data: bytes, level: int) -> bytes:
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_ZLIB:
        return zlib.compress(data, level)
    z = _zstd_module()
    if hasattr(z, "__version__"):  # the zstandard package
        return z.ZstdCompressor(level=level).compress(data)
    return z.compress(data, level=level)


def decompress(codec: int, data: bytes, raw_size: int) -> bytes:
    """Decompress at most `raw_size` bytes; raise ValueError unless exactly `raw_size` come out."""
    if codec == CODEC_NONE:
        out = data
    elif codec == CODEC_ZLIB:
        d = zlib.decompressobj()
        out = d.decompress(data, raw_size)
        if not d.eof or d.unconsumed_tail:
            raise ValueError("zlib stream longer than its recorded size or incomplete")
    elif codec == CODEC_ZSTD:
        z = _zstd_module()
        if z is None:
            raise ValueError("block is zstd-compressed but no zstd module is installed (pip install zstandard)")
        if hasattr(z, "__version__"):  # the zstandard package: a stream read is bounded by its size
            with z.ZstdDecompressor().stream_reader(data) as r:
                out = r.read(raw_size + 1)
        else:
            out = z.ZstdDecompressor().decompress(data, max_length=raw_size + 1)
    else:
        raise ValueError(f"unknown codec {codec}")
    if len(out) != raw_size:
        raise ValueError(f"decompressed to {len(out)} bytes, expected {raw_size}")
    return out


def block_crc(head28: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(head28))


#: the most a codec can expand (deflate's limit is about 1032:1; zstd's RLE blocks go far higher)
MAX_RATIO = {CODEC_NONE: 1, CODEC_ZLIB: 1100, CODEC_ZSTD: 1 << 15}


def make_block(kind: bytes, codec: int, raw: bytes, *, tag: int, level: int = 1, count: int = 0,
               first: int = 0) -> bytes:
    """Encode one block (header + payload). `tag` is the trace's random 32-bit tag, the same in every
    block of a file, so a reader notices bytes spliced in from another trace. Falls back to codec
    none when compression does not help."""
    return b"".join(block_parts(kind, codec, [raw], tag=tag, level=level, count=count, first=first)[0])


def block_parts(kind: bytes, codec: int, parts: list, *, tag: int, level: int = 1, count: int = 0,
                first: int = 0) -> tuple[list, int]:
    """`make_block` for a payload given as a list of bytes-like pieces. Runs of small pieces
    are joined; a large one (a memory capture's pages, from `TraceWriter.write_data`) is never
    copied: zlib compresses the pieces as one stream, and stored pieces are written as they are.
    Few pieces also means few calls that release the GIL, each of which costs a writer thread
    the wait for it back. Returns (the pieces to write: the 32-byte header first; the crc32)."""
    joined, small = [], []
    for p in parts:
        if len(p) < _PIECE:
            small.append(p)
            continue
        if small:
            joined.append(small[0] if len(small) == 1 else b"".join(small))
            small = []
        joined.append(p)
    if small:
        joined.append(small[0] if len(small) == 1 else b"".join(small))
    raw_size = sum(len(p) for p in joined)
    if raw_size > MAX_BLOCK:
        raise ValueError(f"block of {raw_size} bytes exceeds the format's {MAX_BLOCK}")
    stored, used = joined, CODEC_NONE
    if codec == CODEC_ZLIB:
        if len(joined) == 1:
            out = [zlib.compress(joined[0], level)]
        else:
            c = zlib.compressobj(level)
            out = [c.compress(p) for p in joined]
            out.append(c.flush())
            out = [p for p in out if p]
        if sum(len(p) for p in out) < raw_size:
            stored, used = out, codec
    elif codec != CODEC_NONE:
        packed = compress(codec, b"".join(joined), level)
        if len(packed) < raw_size:
            stored, used = [packed], codec
    size = raw_size if used == CODEC_NONE else sum(len(p) for p in stored)
    head = BLOCK.pack(BLOCK_MAGIC, kind, used, size, raw_size, count, first, tag, 0)[:28]
    crc = zlib.crc32(head)
    for p in stored:
        crc = zlib.crc32(p, crc)
    return [head + struct.pack("<I", crc), *stored], crc


#: pieces smaller than this are joined into one before a block is encoded
_PIECE = 1 << 20


def blob_hash(data) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_SIZE).digest()


# -- msgpack encoding of records -------------------------------------------------------------------
class BlobRef(bytes):
    """A reference to a blob: its 16-byte hash. Stored as msgpack ext type 1, so readers can tell
    a reference from inline bytes; resolve it with `TraceReader.blob(ref)`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"BlobRef({self.hex()})"


def _default(o: Any) -> Any:
    if isinstance(o, BlobRef):
        return msgpack.ExtType(EXT_BLOB, bytes(o))
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, int):  # IntEnum, IntFlag
        return int(o)
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o)
    if isinstance(o, str):
        return str(o)
    if isinstance(o, dict):
        return dict(o)
    if isinstance(o, list):
        return list(o)
    if hasattr(o, "__index__"):  # numpy integers
        return o.__index__()
    raise TypeError(f"cannot store a {type(o).__name__} in a trace")


def make_packer() -> msgpack.Packer:
    """strict_types so that BlobRef (a bytes subclass) reaches `_default` and becomes ext type 1."""
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_default)


def _ext_hook(code: int, data: bytes):
    if code == EXT_BLOB and len(data) == HASH_SIZE:
        return BlobRef(data)
    return msgpack.ExtType(code, data)


def unpack(raw: bytes):
    """Decode one msgpack object filling `raw` exactly; every container length is bounded by
    len(raw), so a corrupt length cannot make msgpack allocate more than the block holds."""
    n = len(raw)
    was = gc.isenabled()
    gc.disable()  # a block decodes into ~10^4 containers; collecting midway is wasted work (msgpack docs)
    try:
        return msgpack.unpackb(raw, raw=False, ext_hook=_ext_hook, strict_map_key=True,
                               max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n, max_ext_len=n)
    finally:
        if was:
            gc.enable()


# -- the record schema -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str          # int, str, bytes, blob, bytes|blob, list, map, bool; "?" suffix: may be nil
    required: bool = True
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    required: frozenset = dc_field(init=False, repr=False)  # names of the required fields

    def __post_init__(self):
        object.__setattr__(self, "required", frozenset(f.name for f in self.fields if f.required))


def _k(name: str, doc: str, *fields: str) -> Kind:
    """Compact schema notation: "name:type" required, "name:type*" optional."""
    out = []
    for spec in fields:
        fname, ftype = spec.split(":")
        out.append(Field(fname, ftype.rstrip("*"), not ftype.endswith("*")))
    return Kind(name, tuple(out), doc)


KINDS: dict[str, Kind] = {k.name: k for k in [
    _k("ioctl", "an ioctl on /dev/kfd or a render node, with argument bytes before and after",
       "fd:int", "request:int", "nr:int", "name:str", "arg_in:bytes", "arg_out:bytes", "ret:int",
       "errno:int", "dur_ns:int", "payloads:list*"),
    _k("open", "a device node opened", "path:str", "fd:int", "flags:int", "errno:int"),
    _k("close", "a descriptor closed", "fd:int", "errno:int", "path:str*"),
    _k("mmap", "an mmap of /dev/kfd, a render node, or anonymous memory",
       "addr:int", "length:int", "prot:int", "flags:int", "fd:int", "offset:int", "result:int",
       "errno:int", "target:str"),
    _k("munmap", "an munmap", "addr:int", "length:int", "errno:int*"),
    _k("alloc", "a GPU memory allocation", "gpu_id:int", "handle:int", "va:int", "size:int",
       "domain:str", "flags:int", "mmap_offset:int*"),
    _k("free", "a GPU memory allocation freed", "handle:int", "gpu_id:int*"),
    _k("queue_create", "a user-mode queue created", "queue_id:int", "gpu_id:int", "type:str",
       "ring_base:int", "ring_size:int", "wptr_addr:int", "rptr_addr:int", "doorbell_offset:int",
       "engine:str"),
    _k("queue_destroy", "a queue destroyed", "queue_id:int"),
    _k("submit", "packets published to a ring and its doorbell rung",
       "queue_id:int", "engine:str", "wptr_before:int", "wptr_after:int", "dwords:bytes|blob",
       "ibs:list", "doorbell:int*", "value:int*"),
    _k("memwrite", "CPU-written GPU-visible memory captured before a submission",
       "va:int", "size:int", "data:bytes|blob", "alloc:int?"),
    _k("memwrite_runs", "CPU-written GPU-visible memory captured before a submission: [start, end) byte "
       "runs from `va` (`runs`, u64 pairs) whose bytes are concatenated in `data`",
       "va:int", "size:int", "runs:bytes", "data:bytes|blob", "alloc:int?"),
    _k("codeobj", "a code object loaded to GPU memory", "blob:blob", "va:int", "size:int", "target:str"),
    _k("signal", "a timeline value written", "addr:int", "value:int", "queue:int?"),
    _k("wait", "a CPU wait on a memory value", "addr:int", "condition:str", "value:int",
       "timeout:int?", "result:str", "value_seen:int?", "queue:int?*"),
    _k("event_wait", "a wait on KFD events", "events:list", "result:int", "timeout:int?*", "wait_all:bool*"),
    _k("checksum", "buffer contents when the CPU observed a fence", "va:int", "size:int",
       "algo:str", "digest:bytes"),
    _k("marker", "a user marker (kfdtrace.mark)", "label:str"),
    _k("error", "the script raised", "text:str", "type:str*"),
    _k("end", "the last record: how the trace ended", "status:str", "exit_status:int?"),
]}

_TYPES = {"int": (int,), "str": (str,), "bytes": (bytes,), "blob": (BlobRef,), "list": (list,),
          "map": (dict,), "bool": (bool,), "bytes|blob": (bytes,)}


#: one run of a `memwrite_runs` record: [start, end) byte offsets from its `va`
RUN = struct.Struct("<QQ")


def decode_runs(runs, size: int) -> list[tuple[int, int]]:
    """The [start, end) offset runs of a `memwrite_runs` record, checked: whole 16-byte entries,
    non-empty, increasing and non-overlapping, their lengths adding up to `size` (the bytes of
    `data`). Raises ValueError saying what is wrong."""
    if not isinstance(runs, (bytes, bytearray, memoryview)) or len(runs) % RUN.size:
        raise ValueError(f"runs must be a multiple of {RUN.size} bytes")
    out, end, total = [], 0, 0
    for lo, hi in RUN.iter_unpack(runs):
        if hi <= lo or lo < end:
            raise ValueError(f"run {len(out)} [{lo:#x}, {hi:#x}) is empty or not after the previous one")
        out.append((lo, hi))
        end, total = hi, total + hi - lo
    if total != size:
        raise ValueError(f"runs cover {total} bytes, size says {size}")
    return out


def validate(kind: str, fields: dict) -> list[str]:
    """Problems with a record against the schema (empty list = conforms). Unknown fields are allowed."""
    spec = KINDS.get(kind)
    if spec is None:
        return [f"unknown record kind {kind!r}"]
    problems = []
    for f in spec.fields:
        if f.name not in fields:
            if f.required:
                problems.append(f"{kind}: missing field {f.name!r}")
            continue
        v, typ = fields[f.name], f.type
        if typ.endswith("?"):
            if v is None:
                continue
            typ = typ[:-1]
        if typ == "blob" and not isinstance(v, BlobRef):
            problems.append(f"{kind}.{f.name}: expected a blob reference, got {type(v).__name__}")
        elif not isinstance(v, _TYPES[typ]) or (typ == "int" and isinstance(v, bool)):
            problems.append(f"{kind}.{f.name}: expected {typ}, got {type(v).__name__}")
    if kind == "memwrite_runs" and not problems:
        try:
            decode_runs(fields["runs"], fields["size"])
        except ValueError as e:
            problems.append(f"memwrite_runs.runs: {e}")
        if type(fields["data"]) is bytes and len(fields["data"]) != fields["size"]:
            problems.append(f"memwrite_runs.data: {len(fields['data'])} bytes, size says {fields['size']}")
    return problems


# -- the index summary: what the footer stores and recovery rebuilds ---------------------------------
class ChunkInfo(NamedTuple):
    offset: int
    first: int
    count: int
    t_min: int
    t_max: int
    crc: int


class Summary:
    """Counts per kind, time range, queues and allocations, updated record by record.

    The writer feeds it every record it writes; a recovering reader feeds it every record it
    scans; both therefore produce the same footer content.
    """

    __slots__ = ("counts", "t_min", "t_max", "queues", "allocations", "_live_q", "_live_a", "_track")

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.t_min: int | None = None
        self.t_max: int | None = None
        self.queues: list[dict] = []
        self.allocations: list[dict] = []
        self._live_q: dict[int, dict] = {}
        self._live_a: dict[int, dict] = {}
        self._track = {"queue_create": self._queue_create, "queue_destroy": self._queue_destroy,
                       "submit": self._submit, "alloc": self._alloc, "free": self._free,
                       "memwrite": self._memwrite, "memwrite_runs": self._memwrite}

    def add(self, kind: str, n: int, t: int, fields: dict) -> None:
        counts = self.counts
        counts[kind] = counts.get(kind, 0) + 1
        if self.t_max is None:
            self.t_min = self.t_max = t
        elif t > self.t_max:
            self.t_max = t
        elif t < self.t_min:
            self.t_min = t
        track = self._track.get(kind)
        if track is not None:
            try:
                track(n, fields)
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # a malformed record is still a record; it just does not enter the summary

    def _queue_create(self, n, f):
        q = {k: f.get(k) for k in ("queue_id", "gpu_id", "type", "engine", "ring_base", "ring_size",
                                   "doorbell_offset")}
        q.update(created=n, destroyed=None, submits=0)
        self.queues.append(q)
        self._live_q[f["queue_id"]] = q

    def _queue_destroy(self, n, f):
        q = self._live_q.pop(f["queue_id"], None)
        if q is not None:
            q["destroyed"] = n

    def _submit(self, n, f):
        q = self._live_q.get(f["queue_id"])
        if q is not None:
            q["submits"] += 1

    def _alloc(self, n, f):
        a = {k: f.get(k) for k in ("handle", "gpu_id", "va", "size", "domain", "flags")}
        a.update(allocated=n, freed=None, memwrites=0, memwrite_bytes=0)
        self.allocations.append(a)
        self._live_a[f["handle"]] = a

    def _free(self, n, f):
        a = self._live_a.pop(f["handle"], None)
        if a is not None:
            a["freed"] = n

    def _memwrite(self, n, f):
        a = self._live_a.get(f.get("alloc"))
        if a is not None:
            a["memwrites"] += 1
            size = f.get("size")
            if type(size) is int:
                a["memwrite_bytes"] += size
