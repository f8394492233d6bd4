"""The family registry against the reference tables (amd-kfd.md §6, §7.1, §7.2, §7.3, §3.4, §4.3)."""
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi import families as F
from kfdtrace.abi.families import (FAMILIES, Family, family_from_gfx_target_version, family_from_mach,
                                   get_family, gfx_name_from_target_version, parse_target_id)
from kfdtrace.errors import KfdtraceError, UnknownFamilyError

# name: (arch, GC IP, gfx_target_version, SDMA IP, wave, mach, libhsakmt enum) — copied from §7.1 / §6.
REFERENCE = {
    "gfx900": ("GCN5", "9.0.1", 90000, "4.0.0", 64, 0x2C, 0x090000),
    "gfx906": ("GCN5.1", "9.4.0", 90006, "4.2.0", 64, 0x2F, 0x090006),
    "gfx908": ("CDNA1", "9.4.1", 90008, "4.2.2", 64, 0x30, 0x090008),
    "gfx90a": ("CDNA2", "9.4.2", 90010, "4.4.0", 64, 0x3F, 0x09000A),
    "gfx942": ("CDNA3", "9.4.3", 90402, "4.4.2", 64, 0x4C, 0x090400),
    "gfx950": ("CDNA4", "9.5.0", 90500, "4.4.5", 64, 0x4F, None),
    "gfx1030": ("RDNA2", "10.3.0", 100300, "5.2.0", 32, 0x36, 0x0A0300),
    "gfx1031": ("RDNA2", "10.3.2", 100301, "5.2.2", 32, 0x37, 0x0A0301),
    "gfx1032": ("RDNA2", "10.3.4", 100302, "5.2.4", 32, 0x38, 0x0A0302),
    "gfx1034": ("RDNA2", "10.3.5", 100304, "5.2.5", 32, 0x3E, 0x0A0304),
    "gfx1100": ("RDNA3", "11.0.0", 110000, "6.0.0", 32, 0x41, 0x0B0000),
    "gfx1101": ("RDNA3", "11.0.3", 110001, "6.0.3", 32, 0x46, 0x0B0001),
    "gfx1102": ("RDNA3", "11.0.2", 110002, "6.0.2", 32, 0x47, None),
    "gfx1103": ("RDNA3", "11.0.1", 110003, "6.0.1", 32, 0x44, None),
    "gfx1150": ("RDNA3.5", "11.5.0", 110500, "6.1.0", 32, 0x43, None),
    "gfx1151": ("RDNA3.5", "11.5.1", 110501, "6.1.1", 32, 0x4A, None),
    "gfx1152": ("RDNA3.5", "11.5.2", 110502, "6.1.2", 32, 0x55, None),
    "gfx1200": ("RDNA4", "12.0.0", 120000, "7.0.0", 32, 0x48, 0x0C0000),
    "gfx1201": ("RDNA4", "12.0.1", 120001, "7.0.1", 32, 0x4E, 0x0C0001),
}
REQUIRED = ["gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1151",
            "gfx1200", "gfx1201"]


def test_registry_covers_required_and_reference_rows():
    assert set(REQUIRED) <= set(FAMILIES)
    assert set(FAMILIES) == set(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_family_facts_match_reference(name):
    arch, gc, gtv, sdma, wave, mach, enum = REFERENCE[name]
    f = FAMILIES[name]
    assert (f.name, f.isa_name, f.arch, f.gc_ip, f.gfx_target_version, f.sdma_ip, f.wave_size, f.mach,
            f.hsakmt_version) == (name, name, arch, gc, gtv, sdma, wave, mach, enum)
    assert f.gfx_major == gtv // 10000
    assert f.gc_version == tuple(int(x) for x in gc.split("."))
    assert f.doorbell_size == 8 and f.doorbell_process_slice == 8192   # SOC15: 8 B × 1024 queues


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_round_trip_name_version_mach(name):
    f = FAMILIES[name]
    assert gfx_name_from_target_version(f.gfx_target_version) == name
    assert family_from_gfx_target_version(f.gfx_target_version) is f
    assert family_from_mach(f.mach) is f
    assert get_family(name) is f and get_family(name.upper()) is f
    assert get_family(f.gfx_target_version) is f and get_family(f) is f


def test_gfx_name_rule_is_libhsakmts():
    # §2 examples, including targets the registry does not carry
    for v, name in [(90010, "gfx90a"), (90402, "gfx942"), (90500, "gfx950"), (100300, "gfx1030"),
                    (110000, "gfx1100"), (120001, "gfx1201"), (120500, "gfx1250"), (90012, "gfx90c"),
                    (110501, "gfx1151"), (80003, "gfx803")]:
        assert gfx_name_from_target_version(v) == name
    for bad in (0, -1, True, "90402", None):
        with pytest.raises(UnknownFamilyError):
            gfx_name_from_target_version(bad)


def test_gfx1101_is_not_derived_from_gc_ip():
    # Quirk (§7.1): Navi32 is GC 11.0.3 but compiles as gfx1101 / 110001.
    f = get_family("gfx1101")
    assert f.gc_ip == "11.0.3" and f.gfx_target_version == 110001
    assert get_family(110003).name == "gfx1103"


@pytest.mark.parametrize("key, name", [
    ("gfx942:sramecc+:xnack-", "gfx942"), ("GFX90A:xnack+", "gfx90a"), (" gfx1100 ", "gfx1100"),
    ("amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-", "gfx942"), ("amdgcn-amd-amdhsa--gfx1201", "gfx1201"),
])
def test_target_id_strings(key, name):
    assert get_family(key).name == name


def test_parse_target_id_features():
    assert parse_target_id("amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-") == ("gfx942", {"sramecc": True, "xnack": False})
    assert parse_target_id("gfx1100") == ("gfx1100", {})
    with pytest.raises(UnknownFamilyError, match="xnack"):
        parse_target_id("gfx90a:xnack")


def test_unknown_keys_raise_with_the_known_ones_listed():
    with pytest.raises(UnknownFamilyError) as e:
        get_family("gfx1234")
    msg = str(e.value)
    assert "gfx1234" in msg and all(n in msg for n in FAMILIES)
    with pytest.raises(UnknownFamilyError, match=r"120500 \(gfx1250\).*90402 \(gfx942\)"):
        family_from_gfx_target_version(120500)
    with pytest.raises(UnknownFamilyError, match=r"0x5f.*0x4c \(gfx942\)"):
        family_from_mach(0x5F)        # gfx9-4-generic: a mach, but no single family
    for bad in (None, 3.0, b"gfx942", True):
        with pytest.raises(UnknownFamilyError):
            get_family(bad)
    assert issubclass(UnknownFamilyError, KfdtraceError)


def test_mach_lookup_accepts_whole_e_flags():
    # gfx942 code object v4+: SRAMECC ON (0xC00) | XNACK OFF (0x200) | mach 0x4C
    assert family_from_mach(0xC00 | 0x200 | 0x4C).name == "gfx942"
    with pytest.raises(UnknownFamilyError):
        family_from_mach(-1)


# -- per-family packet differences (§3.3, §3.4, §4.3, §7.3) -----------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_generation_dependent_packet_facts(name):
    f = FAMILIES[name]
    if f.gfx_major == 9:
        assert (f.sdma_gen, f.acquire_mem_dwords, f.pgm_rsrc3_reg) == (4, 7, 0x2E2D)
        assert (f.copy_linear_count_bits, f.const_fill_count_bits) == (22, 22)
        assert not f.sdma_fence_mtype and not f.sdma_has_gcr
        assert dict(f.release_mem_cache_bits)["TC_WB_ACTION_ENA"] == 15
        assert dict(f.release_mem_cache_bits)["TC_ACTION_ENA"] == 17
        assert not f.supports_wave32 and f.simd_per_cu == 4
    else:
        assert (f.acquire_mem_dwords, f.pgm_rsrc3_reg) == (8, 0x2E28)
        assert f.sdma_gen == (5 if f.gfx_major == 10 else 6)     # GFX12's sdma_v7_0.c uses the v6 header
        assert f.copy_linear_count_bits == f.const_fill_count_bits == (22 if f.gfx_major == 10 else 30)
        assert f.sdma_fence_mtype and f.sdma_has_gcr
        bits = dict(f.release_mem_cache_bits)
        assert (bits["GLM_WB"], bits["GL2_INV"], bits["GL2_WB"], bits["GCR_SEQ"]) == (12, 20, 21, 22)
        assert f.supports_wave32 and f.simd_per_cu == 2
    # SET_SH_REG offset = absolute − 0x2C00 (§3.3): 0x22D on GFX9, 0x228 on GFX10+
    assert f.pgm_rsrc3_reg - 0x2C00 == (0x22D if f.gfx_major == 9 else 0x228)


def test_kernel_descriptor_rsrc3_meaning_per_family():
    assert get_family("gfx908").kd_rsrc3_fields == ()
    for n in ("gfx90a", "gfx942", "gfx950"):
        assert get_family(n).kd_rsrc3_fields == (("ACCUM_OFFSET", 0, 5), ("TG_SPLIT", 16, 16))
    assert get_family("gfx1030").kd_rsrc3_fields == (("SHARED_VGPR_COUNT", 0, 3),)
    assert dict((n, (lo, hi)) for n, lo, hi in get_family("gfx1100").kd_rsrc3_fields) == {
        "SHARED_VGPR_COUNT": (0, 3), "INST_PREF_SIZE": (4, 9), "TRAP_ON_START": (10, 10),
        "TRAP_ON_END": (11, 11), "IMAGE_OP": (31, 31)}
    assert dict((n, (lo, hi)) for n, lo, hi in get_family("gfx1201").kd_rsrc3_fields) == {
        "INST_PREF_SIZE": (4, 11), "GLG_EN": (13, 13), "IMAGE_OP": (31, 31)}
    # a gfx90a descriptor with AGPRs at v16 (ACCUM_OFFSET = 16/4 − 1 = 3) and TG_SPLIT set
    assert get_family("gfx90a").decode_rsrc3(0x00010003) == {"ACCUM_OFFSET": 3, "TG_SPLIT": 1}
    # the same bits mean something else on GFX12: INST_PREF_SIZE sits at 11:4
    assert get_family("gfx1201").decode_rsrc3(0x00010003) == {"INST_PREF_SIZE": 0, "GLG_EN": 0, "IMAGE_OP": 0}
    assert get_family("gfx1201").decode_rsrc3(0x2FF0) == {"INST_PREF_SIZE": 0xFF, "GLG_EN": 1, "IMAGE_OP": 0}
    assert get_family("gfx1100").decode_rsrc3(0x2FF0)["INST_PREF_SIZE"] == 0x3F
    with pytest.raises(UnknownFamilyError, match="ACCUM_OFFSET"):
        get_family("gfx1100").encode_rsrc3(ACCUM_OFFSET=1)
    with pytest.raises(UnknownFamilyError, match="does not fit"):
        get_family("gfx90a").encode_rsrc3(ACCUM_OFFSET=64)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(FAMILIES)), st.data())
def test_rsrc3_encode_decode_round_trip(name, data):
    f = FAMILIES[name]
    values = {n: data.draw(st.integers(0, (1 << (hi - lo + 1)) - 1)) for n, lo, hi in f.kd_rsrc3_fields}
    word = f.encode_rsrc3(**values)
    assert f.decode_rsrc3(word) == values
    assert word >> 32 == 0


# -- topology defaults (§2, §7.2) -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_topology_defaults_are_consistent(name):
    f = FAMILIES[name]
    assert f.simd_count == f.cu_count * f.simd_per_cu
    assert f.cu_count <= f.array_count * f.cu_per_simd_array          # harvested CUs only reduce
    assert f.array_count % f.num_xcc == 0 and f.array_count % f.simd_arrays_per_engine == 0
    assert f.num_xcc == (8 if name in ("gfx942", "gfx950") else 1)
    assert f.lds_size_in_kb == (160 if name == "gfx950" else 64)
    # SDMA queues per engine as published (§7.2; SDMA 6.x/7.x reserve 2 of 8 for the kernel)
    expected_q = 2 if f.sdma_ip.startswith("4.0.") else 6 if f.sdma_gen == 6 else 8
    assert f.num_sdma_queues_per_engine == expected_q
    assert f.num_sdma_engines >= 1 and f.vram_size > 0 and f.caches


def test_topology_defaults_match_known_nodes():
    # TG-MOCK's gfx1100 node (§2) and a real MI300X node (simd_count 1216, array_count 32, num_xcc 8)
    g = get_family("gfx1100")
    assert (g.simd_count, g.max_waves_per_simd, g.lds_size_in_kb, g.wave_size, g.array_count,
            g.simd_arrays_per_engine, g.cu_per_simd_array, g.simd_per_cu, g.max_slots_scratch_cu,
            g.num_sdma_engines, g.num_sdma_queues_per_engine, g.num_cp_queues, g.device_id) == \
        (192, 16, 64, 32, 12, 2, 8, 2, 32, 2, 6, 8, 29772)
    m = get_family("gfx942")
    assert (m.simd_count, m.array_count, m.simd_arrays_per_engine, m.num_xcc, m.num_sdma_engines,
            m.num_sdma_xgmi_engines, m.num_cp_queues, m.device_id) == (1216, 32, 1, 8, 2, 14, 24, 0x74A1)


def test_needs_pci_atomics_follows_mec_firmware():
    assert not get_family("gfx942").needs_pci_atomics      # GFX9 never requires them
    g = get_family("gfx1030")
    assert not g.needs_pci_atomics                          # fw 118 >= 92
    assert dataclasses.replace(g, mec_fw_version=91).needs_pci_atomics
    assert dataclasses.replace(get_family("gfx1201"), mec_fw_version=2089).needs_pci_atomics


def test_family_is_frozen_and_hashable():
    f = get_family("gfx942")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.name = "gfx943"  # type: ignore[misc]
    assert {f: 1}[get_family(90402)] == 1
    assert isinstance(f, Family) and F.FAMILIES["gfx942"] is f
