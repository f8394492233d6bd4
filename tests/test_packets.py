"""Packet tables: build→decode round trips for every packet kind on every family, goldens for the
encodings the reference spells out, per-family differences and register names."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi.families import FAMILIES, get_family
from kfdtrace.errors import PacketError
from kfdtrace.packets import ENGINES, Packet, aql, decode_stream, pm4, registers, sdma
from kfdtrace.packets.table import Compiled

FAMS = [None, *FAMILIES.values()]
FAM_IDS = ["none", *FAMILIES]
GOLD = {"gfx942": get_family("gfx942"), "gfx1030": get_family("gfx1030"), "gfx1100": get_family("gfx1100"),
        "gfx1201": get_family("gfx1201"), "gfx90a": get_family("gfx90a")}


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------
def _value(f, rnd: random.Random, mode: str):
    def one():
        if mode == "zero":
            v = 0
        elif mode == "max":
            v = f.mask
        else:
            v = rnd.getrandbits(f.bits) & f.mask
        if f.signed and v >> (f.bits - 1):
            v -= 1 << f.bits
        return v
    return [one() for _ in range(f.array)] if f.array else one()


def _kwargs(c: Compiled, rnd: random.Random, mode: str) -> dict:
    """Random in-range values for every non-view field, plus natural fields the way a decoded
    ``fields`` dict carries them, plus a tail."""
    # views are derived from their sub-fields; the PM4_IB embedded header must stay an IB header
    kw = {f.name: _value(f, rnd, mode) for f in c.fields if not f.view and f.name != "pm4_header"}
    for nat in c.nat:
        if nat.holds(kw):
            kw[nat.name] = nat.value(kw)
    if c.tail:
        n = 1 if mode != "random" else rnd.randint(1, 6)
        kw[c.tail] = [rnd.getrandbits(32) for _ in range(n)]
        if c.layout.keys.get("length_fn"):      # SDMA NOP/WRITE: COUNT follows from the data
            kw.pop("count")
    return kw


def _cases():
    """(engine, name, layout, family) for every layout and every family it exists in."""
    out = []
    for fam in FAMS:
        pk, sk = (fam.gfx_major, fam.sdma_gen) if fam else (None, 4)
        for lay in pm4.PACKETS:
            if lay.applies(pk) and lay.name != "NOP":
                out.append(("pm4", lay, fam))
        for lay in sdma.PACKETS:
            if lay.applies(sk):
                out.append(("sdma", lay, fam))
    out += [("aql", lay, None) for lay in aql.PACKETS]
    return out


CASES = _cases()


def _compiled(engine, lay, fam):
    if engine == "pm4":
        return pm4.compiled(lay, fam.gfx_major if fam else None)
    if engine == "sdma":
        return sdma.compiled(lay, fam.sdma_gen if fam else 4)
    return aql._COMPILED[lay.name][0]


def _roundtrip(engine, lay, fam, kw):
    c = _compiled(engine, lay, fam)
    built = ENGINES[engine].build(lay.name, fam, **kw)
    if engine == "aql":
        assert len(built) == 64
        p = aql.decode_one(built, 0)
    else:
        p = ENGINES[engine].decode_one(built, 0, fam)
        assert p.length == len(built)
    assert p.error is None, p.error
    assert p.name == lay.name
    assert list(p.raw) == (list(struct.unpack("<16I", built)) if engine == "aql" else built)
    for k, v in kw.items():
        f = c.by_name.get(k)
        got = p.fields.get(k, 0) if f is not None and f.sparse else p.fields[k]
        want = list(v) + [0] * (f.array - len(v)) if f is not None and f.array else v
        assert got == want, f"{engine} {lay.name} {k}: built {v!r}, decoded {got!r}"
    # rebuilding from the decoded fields gives the same dwords (views included)
    again = ENGINES[engine].build(lay.name, fam, **p.fields)
    assert again == built
    return p


@pytest.mark.parametrize("mode", ["zero", "max", "random"])
def test_roundtrip_every_kind_every_family(mode):
    rnd = random.Random(f"kfdtrace-{mode}")
    for engine, lay, fam in CASES:
        c = _compiled(engine, lay, fam)
        _roundtrip(engine, lay, fam, _kwargs(c, rnd, mode))


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_property(case, seed):
    engine, lay, fam = case
    _roundtrip(engine, lay, fam, _kwargs(_compiled(engine, lay, fam), random.Random(seed), "random"))


@pytest.mark.parametrize("fam", FAMS, ids=FAM_IDS)
def test_every_family_builds_its_table(fam):
    """Every layout of every family compiles and its decoder tables are complete."""
    assert len(pm4._table(fam.gfx_major if fam else None)) == 256
    tbl = sdma._table(fam.sdma_gen if fam else 4)
    assert tbl[0x0000] and tbl[0x0001] and tbl[0x000A | (0x55 << 8)]   # NOP, COPY, ATOMIC any sub-op


# ------------------------------------------------------------------------------------------------
# PM4 goldens (reference §3)
# ------------------------------------------------------------------------------------------------
def test_pm4_headers_golden():
    f = GOLD["gfx942"]
    assert pm4.build("RELEASE_MEM", f)[0] == 0xC0064900          # PACKET3(RELEASE_MEM, 6)
    assert pm4.build("WAIT_REG_MEM", f)[0] == 0xC0053C00
    assert pm4.build("DISPATCH_DIRECT", f)[0] == 0xC0031500
    assert pm4.build("INDIRECT_BUFFER", f, ib_addr=0x1000, ib_size=8)[:4] == [0xC0023F00, 0x1000, 0, (1 << 23) | 8]
    assert pm4.build("PFP_SYNC_ME") == [0xC0004200, 0]
    assert pm4.build("COPY_DATA", f)[0] == 0xC0044000
    assert pm4.build("ATOMIC_MEM", f)[0] == 0xC0071E00
    assert pm4.build("DMA_DATA", f)[0] == 0xC0055000


def test_filler_and_type2():
    assert pm4.FILLER == 0xFFFF1000 == pm4.build("NOP", count=0x3FFF)[0] == pm4.build("FILLER")[0]
    pk = pm4.decode([0xFFFF1000] * 3 + [0x80000000, 0x80001234], "gfx942")
    assert [(p.name, p.offset, p.length) for p in pk] == [
        ("NOP", 0, 1), ("NOP", 1, 1), ("NOP", 2, 1), ("TYPE2_NOP", 3, 1), ("TYPE2_NOP", 4, 1)]
    assert pk[0].fields["count"] == 0x3FFF and pk[4].fields["pad"] == 0x1234
    # a regular NOP with count n skips n+1 body dwords
    nop = pm4.build("NOP", count=2)
    assert nop == [0xC0021000, 0, 0, 0]
    p = pm4.decode(nop + [0xFFFF1000], None)
    assert [(x.name, x.length) for x in p] == [("NOP", 4), ("NOP", 1)] and p[0].fields["body"] == [0, 0, 0]


def test_acquire_mem_lengths_and_gcr_idiom():
    for fam in FAMILIES.values():
        d = pm4.build("ACQUIRE_MEM", fam)
        assert len(d) == fam.acquire_mem_dwords == (7 if fam.gfx_major == 9 else 8)
    # gfx_v10_0_emit_mem_sync: GL2_INV|GL2_WB|GLM_INV|GLM_WB|GL1_INV|GLV_INV|GLK_INV|GLI_INV(1)
    d = pm4.build("ACQUIRE_MEM", GOLD["gfx1100"], gcr_gl2_inv=1, gcr_gl2_wb=1, gcr_glm_inv=1, gcr_glm_wb=1,
                  gcr_gl1_inv=1, gcr_glv_inv=1, gcr_glk_inv=1, gcr_gli_inv=1)
    assert d[0] == 0xC0065800 and d[7] == 0x0000C3B1
    assert pm4.decode(d, "gfx1100")[0].fields["gcr_cntl"] == 0xC3B1
    # gfx_v9_0_emit_mem_sync: SH_ICACHE|SH_KCACHE|TC|TCL1|TC_WB
    d = pm4.build("ACQUIRE_MEM", GOLD["gfx942"], sh_icache_action_ena=1, sh_kcache_action_ena=1,
                  tc_action_ena=1, tcl1_action_ena=1, tc_wb_action_ena=1)
    assert d[0] == 0xC0055800 and d[1] == (1 << 29) | (1 << 27) | (1 << 23) | (1 << 22) | (1 << 18) == 0x28C40000
    with pytest.raises(PacketError, match="GCR|gcr"):
        pm4.build("ACQUIRE_MEM", GOLD["gfx942"], gcr_gl2_inv=1)       # GFX9 has no GCR_CNTL
    with pytest.raises(PacketError, match="pass a family"):
        pm4.build("ACQUIRE_MEM")
    # decoding trusts COUNT, not the family (§7.3): an 8-dword ACQUIRE_MEM on a gfx9 family argument
    p = pm4.decode(pm4.build("ACQUIRE_MEM", GOLD["gfx1030"], gcr_gl2_wb=1), "gfx942")[0]
    assert p.error is None and p.length == 8 and p.fields["gcr_gl2_wb"] == 1
    assert [p.length for p in pm4.decode(pm4.build("ACQUIRE_MEM", "gfx90a") * 2, None)] == [7, 7]


def test_release_mem_kernel_fence_and_family_bits():
    f = GOLD["gfx942"]
    d = pm4.build("RELEASE_MEM", f, event_type=0x14, event_index=5, data_sel=1, int_sel=2,
                  addr=0x7F3A_0000_2008, data=5, int_ctxid=5, tc_action_ena=1, tc_wb_action_ena=1)
    assert d == [0xC0064900, 0x14 | (5 << 8) | (1 << 15) | (1 << 17), (2 << 24) | (1 << 29),
                 0x00002008, 0x7F3A, 5, 0, 5]
    p = pm4.decode_one(d, 0, f)
    assert (p.fields["event_type"], p.fields["int_sel"], p.fields["data_sel"], p.fields["addr"],
            p.fields["data"], p.fields["int_ctxid"]) == (0x14, 2, 1, 0x7F3A00002008, 5, 5)
    assert "CACHE_FLUSH_AND_INV_TS_EVENT" in p.summary(f) and "addr=0x7f3a00002008" in p.summary(f)
    # the same dword 1 reads as GCR bits on GFX10+: bit 15 = GL1_INV, bit 17 = GL2_RANGE low bit
    p10 = pm4.decode_one(d, 0, "gfx1030")
    assert p10.fields.get("gcr_gl1_inv") == 1 and p10.fields.get("gcr_gl2_range") == 1
    assert "tc_wb_action_ena" not in p10.fields
    # EXECUTE is bit 28 on GFX9/10 and 3<<28 on GFX11/12 (PACKET3_RELEASE_MEM_EXECUTE_GFX11)
    assert pm4.build("RELEASE_MEM", "gfx1100", execute=3)[1] == 3 << 28
    with pytest.raises(PacketError):
        pm4.build("RELEASE_MEM", "gfx942", execute=3)
    with pytest.raises(PacketError, match="no field"):
        pm4.build("RELEASE_MEM", None, tc_wb_action_ena=1)        # family-specific without a family


@pytest.mark.parametrize("fam", list(FAMILIES.values()), ids=list(FAMILIES))
def test_release_mem_cache_bits_match_registry(fam):
    """Our RELEASE_MEM dw1 cache-action fields are the ones the family registry lists."""
    c = pm4.compiled(pm4.BY_NAME["RELEASE_MEM"][0], fam.gfx_major)
    for name, bit in fam.release_mem_cache_bits:
        ours = name.lower() if fam.gfx_major == 9 else "gcr_" + name.lower().removeprefix("gcr_")
        f = c.by_name[ours]
        assert f.pieces[0][:2] == (1, bit), (ours, f.pieces)


def test_set_sh_reg_register_names_per_family():
    for fam in FAMILIES.values():
        d = pm4.build("SET_SH_REG", fam, reg="COMPUTE_PGM_RSRC3", values=[7])
        assert d[1] == fam.pgm_rsrc3_reg - registers.SH_BASE == (0x22D if fam.gfx_major == 9 else 0x228)
        p = pm4.decode_one(d, 0, fam)
        assert p.fields["reg"] == fam.pgm_rsrc3_reg and p.fields["values"] == [7]
        assert p.summary(fam) == "SET_SH_REG COMPUTE_PGM_RSRC3=7"
    d = pm4.build("SET_SH_REG", None, reg="COMPUTE_PGM_LO", values=[0x3A123401, 0x7F])
    assert d == [0xC0027600, 0x20C, 0x3A123401, 0x7F]
    assert pm4.decode(d, None)[0].summary() == "SET_SH_REG COMPUTE_PGM_LO=0x3a123401 COMPUTE_PGM_HI=0x7f"
    assert pm4.build("SET_UCONFIG_REG", None, reg=0xC010, values=[1])[1] == 0x10
    assert pm4.build("SET_SH_REG_INDEX", None, reg_offset=0x240, index=3, values=[1])[1] == (3 << 16) | 0x240
    with pytest.raises(PacketError, match="pass a family"):
        pm4.build("SET_SH_REG", None, reg="COMPUTE_PGM_RSRC3", values=[0])
    with pytest.raises(PacketError, match="outside"):
        pm4.build("SET_SH_REG", None, reg=0x1000, values=[0])


def test_registers():
    g9, g10 = GOLD["gfx942"], GOLD["gfx1100"]
    assert registers.reg_name(0x2E2D, g9) == "COMPUTE_PGM_RSRC3" and registers.reg_name(0x2E28, g9) is None
    assert registers.reg_name(0x2E28, g10) == "COMPUTE_PGM_RSRC3" and registers.reg_name(0x2E2D, g10) is None
    assert registers.reg_name(0x2E2C, g9) == registers.reg_name(0x2E2A, g10) == "COMPUTE_SHADER_CHKSUM"
    assert registers.reg_name(0x2E22, g9) is None and registers.reg_name(0x2E22, g10) == "COMPUTE_REQ_CTRL"
    assert registers.reg_name(0x2E0C, None) == "COMPUTE_PGM_LO" and registers.reg_name(0x2E28, None) is None
    assert registers.reg_addr("compute_user_data_15", "gfx1201") == 0x2E4F
    for fam in FAMILIES.values():
        assert registers.reg_addr("COMPUTE_PGM_RSRC3", fam) == fam.pgm_rsrc3_reg
        assert registers.reg_addr("COMPUTE_DISPATCH_INITIATOR", fam) == 0x2E00
    with pytest.raises(PacketError, match="per family"):
        registers.reg_addr("COMPUTE_PGM_RSRC3", None)
    with pytest.raises(PacketError, match="unknown register"):
        registers.reg_addr("COMPUTE_NOPE", g9)
    assert registers.sh_offset("COMPUTE_TMPRING_SIZE") == 0x218


def test_pm4_other_bodies_golden():
    f = GOLD["gfx1100"]
    d = pm4.build("DISPATCH_DIRECT", f, dim_x=16, dim_y=2, dim_z=1, compute_shader_en=1, cs_w32_en=1)
    assert d == [0xC0031500, 16, 2, 1, 0x8001]
    with pytest.raises(PacketError):
        pm4.build("DISPATCH_DIRECT", "gfx942", cs_w32_en=1)          # wave32 is GFX10+
    d = pm4.build("WAIT_REG_MEM", f, function=3, mem_space=1, poll_addr=0x1_0000_0040, reference=1,
                  mask=0xFFFFFFFF, poll_interval=4)
    assert d == [0xC0053C00, 0x13, 0x40, 1, 1, 0xFFFFFFFF, 4]
    d = pm4.build("WRITE_DATA", f, dst_sel=5, wr_confirm=1, dst_addr=0x2000, data=[1, 2, 3])
    assert d == [0xC0053700, (5 << 8) | (1 << 20), 0x2000, 0, 1, 2, 3]   # COUNT = 2 + ndw
    assert pm4.decode(d, f)[0].fields["data"] == [1, 2, 3]
    d = pm4.build("EVENT_WRITE", f, event_type=0x07, event_index=4)
    assert d == [0xC0004600, 0x407]
    d = pm4.build("EVENT_WRITE", f, event_type=0x04, event_index=5, addr=0x1234_5678_9AB8)
    assert d == [0xC0024600, 0x504, 0x56789AB8, 0x1234] and pm4.decode(d, f)[0].fields["addr"] == 0x123456789AB8
    with pytest.raises(PacketError, match="aligned"):
        pm4.build("EVENT_WRITE", f, event_type=4, addr=0x1004)           # address_lo is bits 31:3
    d = pm4.build("DMA_DATA", f, src_sel=2, dst_sel=3, src_addr=0xCAFE, dst_addr=0x4000, byte_count=1 << 20,
                  cp_sync=1)
    assert d[1] == (2 << 29) | (3 << 20) | (1 << 31) and d[6] == 1 << 20
    d = pm4.build("INVALIDATE_TLBS", f, all_hub=1, pasid=0x8001, flush_type=2)
    assert d[1] == (1 << 4) | (0x8001 << 5) | (2 << 29)
    assert pm4.build("PRED_EXEC", f, exec_count=5, virtualxccid_select=0x3)[1] == (3 << 24) | 5
    # gfx_v6_0/cik emit_semaphore: PACKET3(MEM_SEMAPHORE, 1), lo, (hi & 0xffff) | SEM_SEL
    d = pm4.build("MEM_SEMAPHORE", f, addr=0x1234_5678_9AB8, sem_sel=6)
    assert d == [0xC0013900, 0x56789AB8, 0x1234 | (6 << 29)]
    # opcodes known only by name decode generically by COUNT
    p = pm4.decode([pm4.header(0x5A, 1), 0xAA, 0xBB], f)[0]
    assert (p.name, p.length, p.fields["body"], p.error) == ("INTERRUPT", 3, [0xAA, 0xBB], None)
    assert pm4.build("RUN_CLEANER_SHADER", body=[0]) == [pm4.header(0xD2, 0), 0]


def test_every_appendix_opcode_is_named():
    appendix = {0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x19, 0x1D, 0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24,
                0x25, 0x26, 0x27, 0x28, 0x2A, 0x2C, 0x2D, 0x2F, 0x30, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,
                0x39, 0x3A, 0x3B, 0x3C, 0x3F, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A,
                0x50, 0x51, 0x52, 0x53, 0x55, 0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60, 0x61, 0x62,
                0x63, 0x68, 0x69, 0x6A, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x7C, 0x7D,
                0x7E, 0x80, 0x81, 0x83, 0x84, 0x85, 0x86, 0x88, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x93,
                0x94, 0x95, 0x96, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4,
                0xA5, 0xA6, 0xD2, 0xF0}
    assert set(pm4.OPCODES) == appendix
    for alias, op in [("INDIRECT_BUFFER_CONST", 0x33), ("COND_INDIRECT_BUFFER", 0x3F), ("DISPATCH_DRAW_ACE", 0x8D)]:
        assert pm4.NAMES[alias] == op
    for op, name in pm4.OPCODES.items():
        p = pm4.decode([pm4.header(op, 0), 0], None)[0]
        assert p.name in (name, "COND_INDIRECT_BUFFER") and p.length == 2


# ------------------------------------------------------------------------------------------------
# SDMA goldens (reference §4) and per-generation differences
# ------------------------------------------------------------------------------------------------
def test_sdma_copy_linear_counts_per_generation():
    for fam in FAMILIES.values():
        bits = fam.copy_linear_count_bits
        d = sdma.build("COPY_LINEAR", fam, count=1 << bits, src_addr=0x1000, dst_addr=0x2000)
        assert d == [0x00000001, (1 << bits) - 1, 0, 0x1000, 0, 0x2000, 0]       # COUNT = bytes - 1
        p = sdma.decode_one(d, 0, fam)
        assert (p.fields["count"], p.fields["byte_count"]) == ((1 << bits) - 1, 1 << bits)
        with pytest.raises(PacketError):
            sdma.build("COPY_LINEAR", fam, byte_count=(1 << bits) + 1)
        fb = fam.const_fill_count_bits
        assert sdma.build("CONST_FILL", fam, byte_count=1 << fb)[4] == (1 << fb) - 1
        with pytest.raises(PacketError):
            sdma.build("CONST_FILL", fam, byte_count=(1 << fb) + 1)
    # ROCr dword fill: FILLSIZE 2, COUNT = (dwords - 1) * 4
    d = sdma.build("CONST_FILL", "gfx942", fillsize=2, byte_count=4096, dst_addr=0x8000, src_data=0xDEADBEEF)
    assert d == [0x8000000B, 0x8000, 0, 0xDEADBEEF, 4092]
    assert sdma.decode_one(d, 0, "gfx942").fields["byte_count"] == 4096


def test_sdma_family_specific_packets():
    for fam in FAMILIES.values():
        if fam.sdma_fence_mtype:
            assert sdma.build("FENCE", fam, mtype=3, addr=0x10, data=1) == [0x00030005, 0x10, 0, 1]
        else:
            with pytest.raises(PacketError, match="mtype"):
                sdma.build("FENCE", fam, mtype=3)
        if fam.sdma_has_gcr:
            d = sdma.build("GCR_REQ", fam, base_va=0x1_2345_6780, limit_va=0x1_2345_FF80, gcr_control=0xC3B1 | (5 << 16),
                           vmid=3)
            assert d == [0x11, 0x23456780, (0xC3B1 << 16) | 0x1, 0x2345FF80 | 5, (3 << 24) | 0x1]
            assert len(d) == 5 and sdma.decode_one(d, 0, fam).fields["gcr_control"] == 0x5C3B1
        else:
            with pytest.raises(PacketError, match="does not exist"):
                sdma.build("GCR_REQ", fam)
    # op 16 is DUMMY_TRAP on v4 and GPUVM_INV on v5+; op 32 is DUMMY_TRAP on v5+
    assert sdma.decode([16, 5], "gfx942")[0].name == "DUMMY_TRAP"
    assert sdma.decode([16, 5, 0, 0], "gfx1030")[0].name == "GPUVM_INV"
    assert sdma.decode([32, 5], "gfx1100")[0].name == "DUMMY_TRAP"
    # T2T/TILED sub-window gain DCC metadata dwords on v5+, PTEPDE_RMW a count on v6
    assert len(sdma.build("COPY_T2T_SUB_WIND", "gfx90a")) == 15 and len(sdma.build("COPY_T2T_SUB_WIND", "gfx1030")) == 18
    assert len(sdma.build("COPY_TILED_SUB_WIND", "gfx942")) == 14 and len(sdma.build("COPY_TILED_SUB_WIND", "gfx1100")) == 17
    assert len(sdma.build("PTEPDE_RMW", "gfx1030")) == 7 and len(sdma.build("PTEPDE_RMW", "gfx1201")) == 8


def test_sdma_goldens():
    f = GOLD["gfx942"]
    assert sdma.build("TRAP", f, int_context=7) == [6, 7]
    assert sdma.build("WRITE_UNTILED", f, dst_addr=0x1000, data=[0xAB]) == [2, 0x1000, 0, 0, 0xAB]  # count 0 = 1 dword
    assert sdma.build("WRITE_UNTILED", f, dst_addr=0x1000, data=[1, 2])[3] == 1
    assert sdma.build("POLL_REGMEM", f, hdp_flush=1, func=3, mem_poll=0)[0] == (1 << 26) | (3 << 28) | 8
    assert sdma.build("INDIRECT", f, vmid=0, ib_addr=0x1_0000_0020, ib_size=64) == [4, 0x20, 1, 64, 0, 0]
    assert sdma.build("ATOMIC", f, atomic_op=47, addr=8)[0] == (47 << 25) | 10
    assert sdma.build("TIMESTAMP_GET", f, write_addr=0x1008)[:2] == [0x10D, 0x1008]
    with pytest.raises(PacketError, match="aligned"):
        sdma.build("TIMESTAMP_GET", f, write_addr=0x1004)                    # WRITE_ADDR_LO is bits 31:3
    assert sdma.build("NOP", f, count=2) == [0x00020000, 0, 0] and sdma.build("NOP", f) == [0]
    # sdma_v4_0_vm_set_pte_pde: OP_PTEPDE, pe lo/hi, flags (mask) lo/hi, addr lo/hi, incr, 0, count - 1
    d = sdma.build("PTEPDE_GEN", f, dst_addr=0x1000, mask=0x77, init=0x20_0000, incr=0x1000, count=15)
    assert d == [12, 0x1000, 0, 0x77, 0, 0x200000, 0, 0x1000, 0, 15]
    assert sdma.build("COPY_BROADCAST_LINEAR", f, byte_count=16)[:2] == [BROADCAST := 1 | (1 << 27), 15]
    assert sdma.decode(sdma.build("COPY_BROADCAST_LINEAR", f), f)[0].length == 9
    assert sdma.decode(sdma.build("COPY_L2T_BROADCAST", f), f)[0].length == 16
    assert BROADCAST == 0x08000001
    p = sdma.decode([0], f)[0]                                               # a zero dword is a NOP
    assert (p.name, p.length, p.fields["count"]) == ("NOP", 1, 0)
    # ATOMIC ignores the (reserved) sub-op byte
    assert sdma.decode([10 | (0x33 << 8)] + [0] * 7, f)[0].name == "ATOMIC"
    with pytest.raises(PacketError, match="contradicts"):
        sdma.build("WRITE_UNTILED", f, data=[1, 2], count=5)


# ------------------------------------------------------------------------------------------------
# AQL goldens (reference §5 byte offsets)
# ------------------------------------------------------------------------------------------------
def test_aql_kernel_dispatch_byte_layout():
    b = aql.build("KERNEL_DISPATCH", barrier=1, acquire_fence_scope=2, release_fence_scope=1, dimensions=3,
                  workgroup_size_x=64, workgroup_size_y=2, workgroup_size_z=3, grid_size_x=1024, grid_size_y=4,
                  grid_size_z=6, private_segment_size=16, group_segment_size=4096, kernel_object=0x7F00_0000_1000,
                  kernarg_address=0x7F00_0000_2000, completion_signal=0x7F00_0000_3000)
    assert len(b) == 64
    hdr, setup, wx, wy, wz, _r0, gx, gy, gz, priv, grp, ko, ka, _r2, sig = struct.unpack("<HHHHHHIIIIIQQQQ", b)
    assert hdr == 2 | (1 << 8) | (2 << 9) | (1 << 11) and setup == 3
    assert (wx, wy, wz, gx, gy, gz, priv, grp) == (64, 2, 3, 1024, 4, 6, 16, 4096)
    assert (ko, ka, sig) == (0x7F0000001000, 0x7F0000002000, 0x7F0000003000)
    p = aql.decode_one(b, 0)
    assert p.name == "KERNEL_DISPATCH" and p.fields["setup"] == 3 and p.fields["kernarg_address"] == ka


def test_aql_barrier_agent_vendor_layouts():
    b = aql.build("BARRIER_AND", barrier=1, dep_signal=[0x11, 0x22], completion_signal=0x99)
    assert struct.unpack_from("<H", b, 0)[0] == 3 | (1 << 8)
    assert struct.unpack_from("<5Q", b, 8) == (0x11, 0x22, 0, 0, 0) and struct.unpack_from("<Q", b, 56)[0] == 0x99
    assert aql.decode_one(aql.build("BARRIER_OR"), 0).name == "BARRIER_OR"
    b = aql.build("AGENT_DISPATCH", dispatch_type=7, return_address=0x55, arg=[1, 2, 3, 4])
    assert struct.unpack_from("<HH", b, 0) == (4, 7) and struct.unpack_from("<Q4Q", b, 8) == (0x55, 1, 2, 3, 4)
    # AMD vendor packet, format BARRIER_VALUE: signal @8, value i64 @16, mask i64 @24, cond u32 @32
    b = aql.build("BARRIER_VALUE", signal=0xABC0, value=-1, mask=-1, cond=2)
    assert struct.unpack_from("<HBB", b, 0) == (0, 2, 0)
    assert struct.unpack_from("<QqqI", b, 8) == (0xABC0, -1, -1, 2)
    p = aql.decode_one(b, 0)
    assert (p.name, p.fields["value"], p.fields["mask"]) == ("BARRIER_VALUE", -1, -1)
    # AMD_AQL_FORMAT_PM4_IB: PM4 INDIRECT_BUFFER @4..@19, dw_cnt_remain @20 = 0xA
    b = aql.build("PM4_IB", ib_addr=0x7F00_0000_4000, ib_size=32, completion_signal=0x77)
    assert struct.unpack_from("<HBB", b, 0) == (0, 1, 0)
    assert struct.unpack_from("<4I", b, 4) == (0xC0023F00, 0x4000, 0x7F00, (1 << 23) | 32)
    assert struct.unpack_from("<I", b, 20)[0] == 0xA
    p = aql.decode_one(b, 0)
    assert p.refs == [("pm4_ib", 0x7F0000004000, 32)] and p.error is None
    bad = bytearray(b)
    bad[4:8] = (0xC0001000).to_bytes(4, "little")
    p = aql.decode_one(bytes(bad), 0)
    assert p.error and "INDIRECT_BUFFER" in p.error and p.refs == []
    p = aql.decode_one(aql.build("INVALID"), 0)
    assert p.name == "INVALID"


def test_build_errors_are_packet_errors():
    with pytest.raises(PacketError, match="unknown PM4 packet"):
        pm4.build("NOT_A_PACKET")
    with pytest.raises(PacketError, match="no field"):
        pm4.build("RELEASE_MEM", "gfx942", bogus=1)
    with pytest.raises(PacketError, match="does not fit"):
        pm4.build("RELEASE_MEM", "gfx942", event_type=64)
    with pytest.raises(PacketError, match="integer"):
        pm4.build("RELEASE_MEM", "gfx942", data="5")
    with pytest.raises(PacketError, match="conflicts"):
        pm4.build("ACQUIRE_MEM", "gfx1100", gcr_cntl=0, gcr_gl2_wb=1, gcr_gl2_inv=0)
    with pytest.raises(PacketError, match="unknown SDMA packet"):
        sdma.build("COPY_SIDEWAYS")
    with pytest.raises(PacketError, match="signed"):
        aql.build("BARRIER_VALUE", value=1 << 63)
    with pytest.raises(PacketError, match="at most 5"):
        aql.build("BARRIER_AND", dep_signal=[1] * 6)
    with pytest.raises(Exception, match="unknown GPU family"):
        pm4.build("NOP", "gfx9999")


def test_packet_api():
    p = decode_stream("pm4", bytes.fromhex("0010ffff"), "gfx942")[0]
    assert isinstance(p, Packet) and p.name == "NOP" and p.length == 1
    d = p.to_dict()
    assert d["engine"] == "pm4" and d["raw"] == [0xFFFF1000] and d["refs"] == [] and d["depth"] == 0
    assert decode_stream("sdma", [0, 0], None)[1].offset == 1
    assert decode_stream("aql", aql.build("INVALID"))[0].name == "INVALID"
    with pytest.raises(PacketError, match="engine"):
        decode_stream("vcn", b"")
    with pytest.raises(PacketError, match="whole number of dwords"):
        decode_stream("pm4", b"\0\0\0")
