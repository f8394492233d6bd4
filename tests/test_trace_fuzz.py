"""Hypothesis flips, truncates and splices bytes of real written traces. The reader must raise only
TraceError (with a byte offset inside the file), must never return records that were not written,
and must not allocate beyond a small bound for these few-kilobyte inputs."""
from __future__ import annotations

import functools
import os
import tempfile
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfdtrace.errors import TraceError
from kfdtrace.trace import BlobRef, TraceReader
from kfdtrace.trace import format as F
from kfdtrace.trace.sample import write_sample

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["zlib", "none", "unfinalized"] + (["zstd"] if F.HAVE_ZSTD else [])
PEAK_LIMIT = 8 << 20  # inputs are ~10 kB; anything near this means a length was trusted


@functools.lru_cache(maxsize=None)
def corpus() -> dict[str, bytes]:
    """Real traces: zlib with many small chunks, codec none, one whose writer never finalized, and
    zstd where the module exists."""
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name in NAMES:
            opts = {"zlib": dict(iterations=12, chunk_bytes=400, codec="zlib"),
                    "none": dict(iterations=6, seed=2, chunk_bytes=300, codec="none"),
                    "zstd": dict(iterations=8, seed=3, chunk_bytes=500, codec="zstd")}.get(name)
            if opts is None:
                continue
            write_sample(os.path.join(d, name), flush_interval=None, **opts)
            out[name] = open(os.path.join(d, name), "rb").read()
        with TraceReader(os.path.join(d, "zlib")) as r:
            out["unfinalized"] = out["zlib"][:r._index_offset]
    return out


@functools.lru_cache(maxsize=None)
def original_records(name: str) -> list:
    with tempfile.NamedTemporaryFile(suffix=".trace") as f:
        f.write(corpus()[name])
        f.flush()
        with TraceReader(f.name) as r:
            return [(x.n, x.kind, x.t, x.tid, x.fields) for x in r.records(include_unknown=True)]


def block_offsets(data: bytes) -> list[int]:
    """Offsets of every block header (and the trailer) in a well-formed trace."""
    offs, off = [], F.PREAMBLE.size
    while off + F.BLOCK.size <= len(data) and data[off:off + 2] == F.BLOCK_MAGIC:
        offs.append(off)
        off += F.BLOCK.size + F.BLOCK.unpack_from(data, off)[3]
    return offs + [len(data) - F.TRAILER.size]


def _refs(x):
    if isinstance(x, BlobRef):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _refs(v)
    elif isinstance(x, list):
        for v in x:
            yield from _refs(v)


def exercise(data: bytes) -> list | None:
    """Open, summarize and read everything (records, every blob they reference). Returns the records
    read, or None if the reader refused the file with a TraceError; any other exception fails.
    While tracemalloc runs, also checks the peak allocation stayed small."""
    fd, path = tempfile.mkstemp(suffix=".trace")
    tracemalloc.reset_peak()
    try:
        os.write(fd, data)
        os.close(fd)
        with TraceReader(path) as r:
            info = r.info()
            assert info["records"] == len(r)
            got = []
            for rec in r.records(include_unknown=True):
                for ref in _refs(rec.fields):
                    r.blob(ref)
                got.append((rec.n, rec.kind, rec.t, rec.tid, rec.fields))
            if len(r):
                assert r.record(len(r) - 1).n == len(r) - 1
            return got
    except TraceError as e:
        assert e.offset is not None and 0 <= e.offset <= len(data), e
        assert e.path == path
        return None
    finally:
        os.unlink(path)
        assert tracemalloc.get_traced_memory()[1] < PEAK_LIMIT


names = st.sampled_from(NAMES)


def _is_prefix(got, name):
    orig = original_records(name)
    assert got == orig[:len(got)], "the reader returned records that were never written"


@SETTINGS
@given(names, st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6))
def test_flipped_bytes(name, flips):
    data = bytearray(corpus()[name])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    got = exercise(bytes(data))
    if got is not None:
        _is_prefix(got, name)


def test_flipped_block_headers():
    """Aim at the 32-byte block headers and the trailer, where lengths and record numbers live; this
    is where a trusted length would turn into a huge allocation, so measure allocations here
    (tracemalloc slows the reader ~10x, hence only in this test)."""
    corpus()
    tracemalloc.start()
    try:
        _flipped_block_headers()
    finally:
        tracemalloc.stop()


@SETTINGS
@given(names, st.data())
def _flipped_block_headers(name, draw):
    data = bytearray(corpus()[name])
    offs = block_offsets(bytes(data))
    for _ in range(draw.draw(st.integers(1, 3))):
        pos = draw.draw(st.sampled_from(offs)) + draw.draw(st.integers(0, 31))
        if pos < len(data):
            data[pos] ^= draw.draw(st.integers(1, 255))
    got = exercise(bytes(data))
    if got is not None:
        _is_prefix(got, name)


@SETTINGS
@given(names, st.floats(0, 1))
def test_truncated(name, where):
    data = corpus()[name]
    got = exercise(data[:int(where * len(data))])
    if got is not None:
        _is_prefix(got, name)


@SETTINGS
@given(names, names, st.floats(0, 1), st.floats(0, 1), st.binary(max_size=64), st.booleans())
def test_spliced(a, b, i, j, filler, duplicate):
    """A prefix of one trace + (random bytes or nothing) + a suffix of another (or the same) trace."""
    da, db = corpus()[a], corpus()[b]
    cut_a, cut_b = int(i * len(da)), int(j * len(db))
    data = da[:cut_a] + filler + db[cut_b:]
    if duplicate:  # repeat a stretch of the same file (a block seen twice)
        data = da[:cut_a] + da[cut_b % max(1, len(da)):][:200] + da[cut_a:]
    exercise(data)
