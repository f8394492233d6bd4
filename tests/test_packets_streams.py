"""Walking streams: garbage never raises, the boundary scan agrees with the decoder, truncated and
malformed packets are flagged, indirect buffers are followed with a depth limit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi.families import get_family
from kfdtrace.errors import PacketError
from kfdtrace.packets import aql, pm4, sdma

G9, G10, G11 = get_family("gfx942"), get_family("gfx1030"), get_family("gfx1100")
FAMS = [None, G9, G10, G11, get_family("gfx1201")]

# header-like dwords make random streams reach the interesting code paths
PM4_HEADERS = [pm4.header(op, c) for op in list(pm4.OPCODES)[::3] for c in (0, 1, 2, 5, 6, 7)] + [
    pm4.FILLER, pm4.TYPE2_NOP, 0x00010000, 0x40000000, pm4.header(0xEE, 3)]
SDMA_HEADERS = [0, 1, 1 | (1 << 27), 0x101, 2, 0x102, 0x1102, 4, 5, 6, 7, 8, 0x108, 0x208, 0x308, 0x408, 9, 10,
                11, 0x10B, 12, 0x10C, 0x20C, 0x30C, 13, 0x10D, 0x20D, 14, 15, 16, 17, 0x111, 32, 0x00030000, 0xFF]
u32 = st.integers(0, 2**32 - 1)
pm4_stream = st.lists(st.one_of(u32, st.sampled_from(PM4_HEADERS), st.just(0)), max_size=300)
sdma_stream = st.lists(st.one_of(u32, st.sampled_from(SDMA_HEADERS), st.integers(0, 40)), max_size=300)


def _check_walk(engine, packets, dwords):
    """Packets tile the stream exactly, raw is the stream's slice, every packet is well formed."""
    pos = 0
    for p in packets:
        assert p.offset == pos and p.length >= 1
        assert list(p.raw) == dwords[pos:pos + p.length]
        assert isinstance(p.fields, dict) and p.summary() and p.to_dict()["name"] == p.name
        if p.name == "TRUNCATED":
            assert p.error and p is packets[-1]
        pos += p.length
    assert pos == len(dwords)
    return packets


@settings(max_examples=150, deadline=None)
@given(words=pm4_stream, fam=st.sampled_from(FAMS))
def test_random_pm4_streams_never_raise(words, fam):
    packets = _check_walk("pm4", pm4.decode(words, fam), words)
    offs, ops, lens = pm4.scan(np.array(words, dtype=np.uint32))
    assert offs.tolist() == [p.offset for p in packets]
    assert [min(l, len(words) - o) for o, l in zip(offs.tolist(), lens.tolist())] == [p.length for p in packets]
    for p, op in zip(packets, ops.tolist()):
        assert op == ((p.raw[0] >> 8) & 0xFF if p.raw[0] >> 30 == 3 else -1)
        one = pm4.decode_one(words, p.offset, fam)                  # same answer from any position
        assert (one.name, one.length, one.fields, one.error) == (p.name, p.length, p.fields, p.error)
        arr = pm4.decode_one(np.array(words, dtype=np.uint32), p.offset, fam)
        assert (arr.name, arr.length, arr.fields) == (p.name, p.length, p.fields)


@settings(max_examples=150, deadline=None)
@given(words=sdma_stream, fam=st.sampled_from(FAMS))
def test_random_sdma_streams_never_raise(words, fam):
    packets = _check_walk("sdma", sdma.decode(words, fam), words)
    offs, keys, lens = sdma.scan(np.array(words, dtype=np.uint32), fam)
    assert offs.tolist() == [p.offset for p in packets]
    assert [min(l, len(words) - o) for o, l in zip(offs.tolist(), lens.tolist())] == [p.length for p in packets]
    assert keys.tolist() == [p.raw[0] & 0xFFFF for p in packets]
    for p in packets:
        one = sdma.decode_one(np.array(words, dtype=np.uint32), p.offset, fam)
        assert (one.name, one.length, one.fields) == (p.name, p.length, p.fields)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=64 * 6), types=st.lists(st.integers(0, 7), max_size=6))
def test_random_aql_buffers_never_raise(data, types):
    buf = bytearray(data)
    for i, t in enumerate(types):                  # make some slots carry real packet types
        if i * 64 < len(buf):
            buf[i * 64] = t
            if i * 64 + 2 < len(buf) and t == 0:
                buf[i * 64 + 2] = i % 4
    whole = len(buf) - len(buf) % 4
    packets = aql.decode(bytes(buf[:whole]))
    assert [p.offset for p in packets] == list(range(0, whole, 64))
    for p in packets:
        assert p.length == 16 or p.name == "TRUNCATED"
        assert p.summary() and aql.decode_one(bytes(buf[:whole]), p.offset).name == p.name


def test_large_random_streams_scan_equals_decode():
    """The vectorised scan's speculative walkers (chunks of 1024 dwords) must not change the answer."""
    rng = np.random.default_rng(7)
    for fill in (None, pm4.FILLER, 0):
        a = rng.integers(0, 2**32, 60_000, dtype=np.uint64).astype(np.uint32)
        if fill is not None:
            a[rng.integers(0, len(a), len(a) // 3)] = fill
        assert pm4.scan(a)[0].tolist() == [p.offset for p in pm4.decode(a, G9)]
        assert sdma.scan(a, G11)[0].tolist() == [p.offset for p in sdma.decode(a, G11)]
    # a realistic stream: packets back to back
    parts = [pm4.build("RELEASE_MEM", G9, addr=8, data=1), pm4.build("SET_SH_REG", G9, reg=0x2E40, values=[1, 2]),
             [pm4.FILLER], pm4.build("NOP", count=40)]
    choice = rng.integers(0, len(parts), 20_000)
    words = [w for i in choice for w in parts[i]]
    offs, ops, lens = pm4.scan(np.array(words, dtype=np.uint32))
    assert len(offs) == 20_000 and lens.tolist() == [len(parts[i]) for i in choice]


def test_truncated_and_unknown():
    d = pm4.build("RELEASE_MEM", G9, addr=0x1000, data=1)
    p = pm4.decode(d[:5], G9)
    assert [(x.name, x.length) for x in p] == [("TRUNCATED", 5)]
    assert "RELEASE_MEM needs 8 dwords, only 5 left" in p[0].error and p[0].fields["needed"] == 8
    p = pm4.decode([pm4.header(0xEE, 1), 1, 2, 0x40000000], G9)
    assert (p[0].name, p[0].length, p[0].fields["opcode"], p[0].fields["body"]) == ("UNKNOWN", 3, 0xEE, [1, 2])
    assert "0xee" in p[0].error and p[1].name == "UNKNOWN" and p[1].length == 1    # a type-1 header
    p = pm4.decode([0x0001_0100, 5, 6], None)                                      # type-0 register burst
    assert (p[0].name, p[0].fields["reg_offset"], p[0].fields["values"]) == ("TYPE0", 0x100, [5, 6])
    p = sdma.decode(sdma.build("COPY_LINEAR", G9, byte_count=8)[:4], G9)
    assert p[0].name == "TRUNCATED" and "COPY_LINEAR needs 7" in p[0].error
    p = sdma.decode([0xFF, 0], G9)
    assert (p[0].name, p[0].length, p[0].fields["op"], p[1].name) == ("UNKNOWN", 1, 0xFF, "NOP")
    p = sdma.decode([2, 0x10, 0, 100], G9)                                         # WRITE needing 101 data dwords
    assert p[0].name == "TRUNCATED" and p[0].fields["needed"] == 105
    p = aql.decode(aql.build("INVALID") + b"\x01\x00\x00\x00" * 3)
    assert [x.name for x in p] == ["INVALID", "TRUNCATED"] and p[1].offset == 64
    with pytest.raises(PacketError):
        pm4.decode_one([1, 2], 5, G9)


def test_length_mismatch_is_flagged_not_fatal():
    d = pm4.build("RELEASE_MEM", G9, int_sel=2, data=1)
    bad = [pm4.header(0x49, 3)] + d[1:5] + [pm4.FILLER]        # header says 5 dwords, layout has 8
    p = pm4.decode(bad, G9)
    assert (p[0].name, p[0].length, p[1].name) == ("RELEASE_MEM", 5, "NOP")
    assert "8 dwords" in p[0].error and p[0].fields["int_sel"] == 2 and "data" not in p[0].fields
    # opcode 0x3F with another COUNT is COND_INDIRECT_BUFFER (nvd.h), decoded generically
    p = pm4.decode([pm4.header(0x3F, 5)] + [0] * 6, G10)[0]
    assert (p.name, p.length, p.error) == ("COND_INDIRECT_BUFFER", 7, None)
    p = pm4.decode([pm4.header(0x46, 2), 0x504, 0x1000, 0], G10)[0]               # EVENT_WRITE with address
    assert p.fields["addr"] == 0x1000 and p.error is None
    p = pm4.decode([pm4.header(0x46, 1), 0x504, 0x1000], G10)[0]
    assert p.error and "2 or 4" in p.error


class Memory:
    """A sparse dword memory for `follow`."""

    def __init__(self):
        self.blocks = {}
        self.reads = []

    def put(self, addr, dwords):
        self.blocks[addr] = list(dwords)

    def __call__(self, addr, ndw):
        self.reads.append((addr, ndw))
        if addr not in self.blocks:
            if addr == 0xBAD000:
                raise RuntimeError("page fault")
            return None
        return np.array(self.blocks[addr][:ndw], dtype=np.uint32)


def test_pm4_follows_indirect_buffers():
    mem = Memory()
    inner = pm4.build("WRITE_DATA", G9, dst_sel=5, dst_addr=0x9000, data=[7])
    ib = pm4.build("SET_SH_REG", G9, reg="COMPUTE_PGM_LO", values=[1, 2]) + \
        pm4.build("INDIRECT_BUFFER", G9, ib_addr=0x5000, ib_size=len(inner)) + [pm4.FILLER]
    mem.put(0x4000, ib)
    mem.put(0x5000, inner)
    ring = pm4.build("INDIRECT_BUFFER", G9, ib_addr=0x4000, ib_size=len(ib)) + \
        pm4.build("INDIRECT_BUFFER", G9, ib_addr=0x7000, ib_size=4) + \
        pm4.build("INDIRECT_BUFFER", G9, ib_addr=0xBAD000, ib_size=4) + \
        pm4.build("RELEASE_MEM", G9, data=1)
    plain = pm4.decode(ring, G9)
    assert [p.name for p in plain] == ["INDIRECT_BUFFER"] * 3 + ["RELEASE_MEM"]
    assert plain[0].refs == [("pm4_ib", 0x4000, len(ib))] and plain[0].fields["valid"] == 1
    p = pm4.decode(ring, G9, follow=mem)
    assert [(x.name, x.depth, x.parent) for x in p] == [
        ("INDIRECT_BUFFER", 0, None), ("SET_SH_REG", 1, 0), ("INDIRECT_BUFFER", 1, 0), ("WRITE_DATA", 2, 2),
        ("NOP", 1, 0), ("INDIRECT_BUFFER", 0, None), ("INDIRECT_BUFFER", 0, None), ("RELEASE_MEM", 0, None)]
    assert p[3].fields["data"] == [7] and p[1].offset == 0 and p[2].offset == 4
    assert p[6].error and "page fault" in p[6].error                 # unreadable IB: flagged, walk goes on
    assert (0x7000, 4) in mem.reads                                  # unmapped IB: follow returned None
    # an IB that calls itself stops at max_depth
    loop = pm4.build("INDIRECT_BUFFER", G9, ib_addr=0x8000, ib_size=4)
    mem.put(0x8000, loop)
    p = pm4.decode(loop, G9, follow=mem, max_depth=3)
    assert [x.depth for x in p] == [0, 1, 2, 3]
    assert pm4.decode(loop, G9, follow=mem, max_depth=0) == pm4.decode(loop, G9)


def test_sdma_follows_indirect_buffers():
    mem = Memory()
    ib = sdma.build("FENCE", G10, addr=0x100, data=3) + sdma.build("TRAP", G10, int_context=3)
    mem.put(0x2000, ib)
    ring = sdma.build("INDIRECT", G10, ib_addr=0x2000, ib_size=len(ib)) + [0, 0]
    p = sdma.decode(ring, G10, follow=mem)
    assert [(x.name, x.depth, x.parent) for x in p] == [
        ("INDIRECT", 0, None), ("FENCE", 1, 0), ("TRAP", 1, 0), ("NOP", 0, None), ("NOP", 0, None)]
    assert p[1].fields["data"] == 3 and p[0].refs == [("sdma_ib", 0x2000, 6)]


def test_aql_pm4_ib_follows_embedded_indirect_buffer():
    mem = Memory()
    inner = pm4.build("WRITE_DATA", G9, dst_addr=0x40, data=[1])
    ib = pm4.build("INDIRECT_BUFFER", G9, ib_addr=0x6000, ib_size=len(inner)) + [pm4.FILLER]
    mem.put(0x5000, ib)
    mem.put(0x6000, inner)
    ring = aql.build("PM4_IB", ib_addr=0x5000, ib_size=len(ib)) + aql.build("INVALID")
    p = aql.decode(ring, family=G9, follow=mem)
    assert [(x.name, x.depth, x.parent) for x in p] == [
        ("PM4_IB", 0, None), ("INDIRECT_BUFFER", 1, 0), ("WRITE_DATA", 2, 1), ("NOP", 1, 0), ("INVALID", 0, None)]
    assert p[-1].offset == 64 and p[2].fields["dst_addr"] == 0x40
    arr = np.frombuffer(ring, dtype=np.uint32)
    assert [x.name for x in aql.decode(arr)] == ["PM4_IB", "INVALID"]
    assert aql.decode_one(arr, 64).name == "INVALID"


def test_long_packets_offsets_and_windows():
    """decode_one on arrays converts only a window; packets longer than it are still whole."""
    wd = pm4.build("WRITE_DATA", G9, dst_addr=0x100, data=list(range(100)))
    ring = np.zeros(300, dtype=np.uint32)
    ring[50:50 + len(wd)] = wd
    p = pm4.decode_one(ring, 50, G9)
    assert (p.name, p.offset, p.length, p.fields["data"]) == ("WRITE_DATA", 50, 104, list(range(100)))
    assert pm4.decode_one(ring.tobytes(), 50, G9).fields["data"] == list(range(100))
    wu = sdma.build("WRITE_UNTILED", G11, dst_addr=0x100, data=list(range(70)))
    ring[200:200 + len(wu)] = wu
    p = sdma.decode_one(ring, 200, G11)
    assert (p.name, p.length, p.fields["count"], p.fields["data"][-1]) == ("WRITE_UNTILED", 74, 69, 69)
    # offset/end select a window of the stream; offsets stay stream positions
    words = [pm4.FILLER] * 4 + pm4.build("PFP_SYNC_ME") + [pm4.FILLER] * 4
    assert [(x.name, x.offset) for x in pm4.decode(words, G9, offset=4, end=7)] == [("PFP_SYNC_ME", 4), ("NOP", 6)]
    assert [x.offset for x in sdma.decode([0] * 10, G9, offset=8)] == [8, 9]
