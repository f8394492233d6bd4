"""KFD sysfs topology: parse the committed tree, write→read round trips, tolerance, errors."""
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi import topology as T
from kfdtrace.abi.families import FAMILIES, get_family
from kfdtrace.abi.topology import (DictReader, Node, Topology, crc16, ctx_save_restore_sizes, format_properties,
                                   generate_gpu_id, gpu_capability, gpu_debug_prop, make_cpu_node, make_gpu_caches,
                                   make_gpu_node, make_topology, parse_properties, read_topology, topology_files,
                                   write_topology)
from kfdtrace.errors import TopologyError, UnknownFamilyError

FIXTURE = Path(__file__).parent / "fixtures" / "topology"
GiB = 1 << 30


def ref_crc16(data: bytes) -> int:
    """Bit-by-bit CRC-16 (poly 0x8005 reflected, init 0) — independent of the table in topology.py."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def ref_gpu_id(bus: int, devfn: int, device: int, mem: int, xcc_mask: int, domain: int = 0) -> int:
    first = (xcc_mask & -xcc_mask).bit_length() - 1
    buf = struct.pack("<8I", devfn, 0x1002, domain, device, bus, mem & 0xFFFFFFFF, mem >> 32,
                      first | bin(xcc_mask).count("1") << 16)
    return ref_crc16(buf) & 0xFFFF or 1


@pytest.fixture(scope="module")
def fixture_topo() -> Topology:
    if os.environ.get("KFDTRACE_REGEN_FIXTURES"):
        write_topology(make_topology(["gfx942", "gfx942"], xgmi_hive=True), FIXTURE, overwrite=True)
    return read_topology(FIXTURE)


# -- the committed tree -----------------------------------------------------------------------------
def test_fixture_system_and_nodes(fixture_topo):
    t = fixture_topo
    assert t.generation_id == 1
    assert t.system_properties == {"platform_oem": int.from_bytes(b"KFDTRACE", "little"),
                                   "platform_id": int.from_bytes(b"KFDEMU", "little"), "platform_rev": 1}
    assert [n.index for n in t.nodes] == [0, 1, 2]
    cpu, g1, g2 = t.nodes
    assert t.cpu_nodes == [cpu] and t.gpus == [g1, g2]
    assert (cpu.gpu_id, cpu.name, cpu.is_gpu, cpu.is_cpu, cpu.cpu_cores_count) == (0, "", False, True, 16)
    assert cpu.caches == [] and cpu.mem_banks == [{"heap_type": 0, "size_in_bytes": 64 * GiB, "flags": 0,
                                                   "width": 64, "mem_clk_max": 3200}]
    # the kernel prints CPU nodes without the GPU-only keys
    assert list(cpu.properties) == list(T.NODE_KEYS) + ["max_engine_clk_ccompute"]
    assert list(g1.properties) == list(T.NODE_KEYS) + list(T.NODE_GPU_KEYS) + ["max_engine_clk_ccompute"]


def test_fixture_gpu_nodes(fixture_topo):
    cpu, g1, g2 = fixture_topo.nodes
    assert g1.gpu_id == ref_gpu_id(3, 0, 0x74A1, 192 * GiB, 0xFF)
    assert g2.gpu_id == ref_gpu_id(4, 0, 0x74A1, 192 * GiB, 0xFF)
    assert fixture_topo.gpu(g2.gpu_id) is g2
    for g, minor, bus in ((g1, 128, 3), (g2, 129, 4)):
        assert g.family is get_family("gfx942") and g.name == "ip discovery"
        assert (g.drm_render_minor, g.render_node, g.pci_bus_id) == (minor, f"/dev/dri/renderD{minor}",
                                                                    f"0000:{bus:02x}:00.0")
        assert (g.simd_count, g.cu_count, g.num_xcc, g.array_count, g.wave_front_size) == (1216, 304, 8, 32, 64)
        assert (g.num_sdma_engines, g.num_sdma_xgmi_engines, g.num_sdma_queues_per_engine) == (2, 14, 8)
        assert g.vram_size == 192 * GiB and g.vendor_id == 0x1002 and g.device_id == 0x74A1
        assert g.doorbell_type == 2 and g.capability & T.CAP_SVMAPI_SUPPORTED
        # kfd_queue_ctx_save_restore_size by hand: 38 CUs/XCC, 1520 waves, 0x95000 B per CU
        assert (g.cwsr_size, g.ctl_stack_size) == (23203840, 12288)
        # the kernel's 626 caches for an MI300X: 304 TCP + 160 SQC-I + 160 SQC-D + L2 + L3
        levels = [c["level"] for c in g.caches]
        assert (len(g.caches), g.properties["caches_count"]) == (626, 626)
        assert (levels.count(1), levels.count(2), levels.count(3)) == (624, 1, 1)
        assert g.caches[0]["sibling_map"] == (1,) + (0,) * 31 and g.caches[0]["size"] == 32
        assert g.hive_id != 0 and g.hive_id == g1.hive_id
    assert g1.simd_id_base == T.KFD_GPU_PROCESSOR_ID_BASE and g2.simd_id_base == g1.simd_id_base + 320


def test_fixture_io_links(fixture_topo):
    cpu, g1, g2 = fixture_topo.nodes
    pcie, xgmi = g1.io_links
    assert (pcie["type"], pcie["node_from"], pcie["node_to"], pcie["weight"], pcie["flags"]) == (2, 1, 0, 20, 1)
    assert pcie["recommended_sdma_engine_id_mask"] == 0b11
    assert (xgmi["type"], xgmi["node_from"], xgmi["node_to"], xgmi["weight"], xgmi["flags"]) == (11, 1, 2, 15, 1)
    assert xgmi["recommended_sdma_engine_id_mask"] == ((1 << 14) - 1) << 2     # the XGMI engines
    assert g2.io_links[1]["node_to"] == 1 and g1.properties["io_links_count"] == 2
    assert [(l["node_to"], l["flags"]) for l in cpu.io_links] == [(1, 3), (2, 3)]  # ENABLED|NON_COHERENT
    assert list(pcie) == list(T.IOLINK_KEYS) and g1.p2p_links == []


def test_fixture_raw_format():
    props = (FIXTURE / "nodes/1/properties").read_bytes()
    assert props.startswith(b"cpu_cores_count 0\nsimd_count 1216\n")
    assert props.endswith(b"max_engine_clk_ccompute 3000\n")
    assert b"gfx_target_version 90402\n" in props and b"hive_id " in props
    assert (FIXTURE / "nodes/1/gpu_id").read_bytes().endswith(b"\n")
    assert (FIXTURE / "nodes/1/name").read_bytes() == b"ip discovery\n"
    assert (FIXTURE / "generation_id").read_bytes() == b"1\n"
    cache = (FIXTURE / "nodes/1/caches/1/properties").read_text()
    assert cache.splitlines()[-1] == "sibling_map " + ",".join(["1"] + ["0"] * 31)


def test_fixture_matches_generator():
    """Golden check: the committed tree is byte-for-byte what make_topology writes."""
    files = topology_files(make_topology(["gfx942", "gfx942"], xgmi_hive=True))
    on_disk = {p.relative_to(FIXTURE).as_posix() for p in FIXTURE.rglob("*") if p.is_file()} - {"README.md"}
    assert on_disk == {k for k, v in files.items() if v is not None}
    for rel, data in files.items():
        if data is not None:
            assert (FIXTURE / rel).read_bytes() == data, rel


# -- round trips --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_write_read_round_trip_every_family(name, tmp_path):
    topo = make_topology([name, name], xgmi_hive=get_family(name).num_sdma_xgmi_engines > 0, seed=name)
    topo.nodes[1].p2p_links.append(dict(topo.nodes[1].io_links[0], node_to=0, weight=40))
    topo.nodes[1].sync_counts()
    write_topology(topo, tmp_path / "topology")
    back = read_topology(tmp_path / "topology")
    assert back == topo
    g = back.gpus[0]
    fam = get_family(name)
    assert g.family is fam and g.simd_count == fam.simd_count and g.vram_size == fam.vram_size
    assert g.properties["caches_count"] == len(g.caches) == len(make_gpu_caches(fam))
    assert g.properties["p2p_links_count"] == 1 and back.nodes[1].p2p_links[0]["weight"] == 40
    assert (g.cwsr_size, g.ctl_stack_size) == tuple(ctx_save_restore_sizes(g.properties)[k]
                                                    for k in ("cwsr_size", "ctl_stack_size"))
    assert len(set(back.gpu_ids)) == 2


class RecordingReader:
    """A port-like reader over a dict: proves parsing never touches the filesystem."""

    def __init__(self, files, root):
        self.inner, self.calls = DictReader(files, root), []

    def read_file(self, path):
        self.calls.append(("read", path))
        return self.inner.read_file(path)

    def listdir(self, path):
        self.calls.append(("list", path))
        return self.inner.listdir(path)


def test_read_through_a_reader_object():
    topo = make_topology(["gfx1100", "gfx90a"])
    root = "/nonexistent/emu/sys/devices/virtual/kfd/kfd/topology"
    r = RecordingReader(topology_files(topo), root)
    back = read_topology(root, r)
    assert back == topo and not os.path.exists(root)
    assert ("read", root + "/nodes/1/gpu_id") in r.calls and ("list", root + "/nodes") in r.calls
    assert [g.family.name for g in back.gpus] == ["gfx1100", "gfx90a"]
    assert back.gpus[0].properties["caches_count"] == 206     # TG-MOCK's gfx1100 node has 206
    # DictReader behaves like the OS for files vs directories
    with pytest.raises(IsADirectoryError):
        r.inner.read_file(root + "/nodes")
    with pytest.raises(NotADirectoryError):
        r.inner.listdir(root + "/generation_id")
    with pytest.raises(FileNotFoundError):
        r.inner.read_file("/elsewhere/x")


# -- tolerance -------------------------------------------------------------------------------------
def test_missing_and_unknown_keys_tolerated(tmp_path):
    topo = make_topology(["gfx1030"])
    files = topology_files(topo)
    old = parse_properties(files["nodes/1/properties"])
    for k in ("p2p_links_count", "cwsr_size", "ctl_stack_size", "capability2", "debug_prop", "num_xcc", "unique_id"):
        del old[k]                                         # what a 5.x kernel prints
    old["future_key"] = 7
    files["nodes/1/properties"] = format_properties(old)
    files["nodes/1/io_links/0/properties"] = b"type 2\nnode_from 1\nnode_to 0\n"   # no rec. SDMA mask
    for gone in ("generation_id", "nodes/1/name", "nodes/0/gpu_id"):
        del files[gone]
    files = {k: v for k, v in files.items() if "/p2p_links" not in k and "/perf" not in k}
    files["nodes/notanode"] = b"x"                          # stray entries are ignored
    back = read_topology("/t", DictReader(files, "/t"))
    g = back.nodes[1]
    assert back.generation_id == 0 and g.name == "" and back.nodes[0].gpu_id == 0
    assert g.num_xcc == 1 and g.cwsr_size == 0 and g.debug_prop == 0 and g.get("capability2") is None
    assert g.properties["future_key"] == 7 and list(g.properties)[-1] == "future_key"
    assert g.io_links == [{"type": 2, "node_from": 1, "node_to": 0}] and g.p2p_links == []
    assert g.family.name == "gfx1030"


def test_permission_denied_node_is_marked_inaccessible():
    files = topology_files(make_topology(["gfx942", "gfx942"]))

    class CgroupReader(DictReader):
        def read_file(self, path):
            if "/nodes/2/" in path:
                raise PermissionError(1, "Operation not permitted", path)
            return super().read_file(path)

    t = read_topology("/t", CgroupReader(files, "/t"))
    assert [n.accessible for n in t.nodes] == [True, True, False]
    assert len(t.gpus) == 1 and t.nodes[2].gpu_id == 0


def test_generation_change_is_retried():
    files = topology_files(make_topology(["gfx1100"]))

    class Racing(DictReader):
        reads = 0

        def read_file(self, path):
            if path.endswith("generation_id"):
                Racing.reads += 1
                return b"%d\n" % (1 if Racing.reads < 2 else 2)   # changes once, then stable
            return super().read_file(path)

    assert read_topology("/t", Racing(files, "/t")).generation_id == 2

    class Flapping(DictReader):
        n = 0

        def read_file(self, path):
            if path.endswith("generation_id"):
                Flapping.n += 1
                return b"%d\n" % Flapping.n
            return super().read_file(path)

    with pytest.raises(TopologyError, match="generation_id kept changing"):
        read_topology("/t", Flapping(files, "/t"))


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel, content, where", [
    ("nodes/1/properties", b"cpu_cores_count 0\nsimd_count 9\nmem_banks_count x1\n", ":3: value of 'mem_banks_count'"),
    ("nodes/1/properties", b"cpu_cores_count 0\nsimd_count\n", ":2: expected 'name value'"),
    ("nodes/1/properties", b"simd_count 1\nsimd_count 2\n", ":2: property 'simd_count' appears twice"),
    ("nodes/1/properties", b"simd_count -4\n", ":1: value of 'simd_count'"),
    ("nodes/1/properties", b"simd_count 18446744073709551616\n", ":1: value of 'simd_count'"),
    ("nodes/1/properties", b"simd_count 1\nbad-name 2\n", ":2: malformed property name"),
    ("nodes/1/properties", b"simd_count 1\n\nlds_size_in_kb 6\xc44\n", ":3: non-ASCII byte 0xc4"),
    ("nodes/1/properties", b"sibling_map 1,0\n", "node property 'sibling_map'"),
    ("nodes/1/gpu_id", b"0x1234\n", "gpu_id:1: value"),
    ("generation_id", b"\n", "generation_id:1: value"),
    ("nodes/1/caches/3/properties", b"level 1\nsibling_map 1,,0\n", ":2: malformed sibling_map"),
    ("nodes/1/io_links/0/properties", b"type 2\nweight 1 2\n", ":2: expected 'name value'"),
    ("system_properties", b"platform_oem 1\nplatform_id 2.5\n", ":2: value of 'platform_id'"),
])
def test_malformed_file_names_file_and_line(rel, content, where):
    files = topology_files(make_topology(["gfx1100"]))
    files[rel] = content
    with pytest.raises(TopologyError) as e:
        read_topology("/t", DictReader(files, "/t"))
    assert f"/t/{rel}" in str(e.value) and where in str(e.value)


def test_missing_root_and_unreadable_files(tmp_path):
    with pytest.raises(TopologyError, match="no KFD topology"):
        read_topology(tmp_path / "nope")

    class Broken(DictReader):
        def read_file(self, path):
            if path.endswith("system_properties"):
                raise OSError(5, "Input/output error", path)
            return super().read_file(path)

    with pytest.raises(TopologyError, match="system_properties: cannot read: Input/output error"):
        read_topology("/t", Broken(topology_files(make_topology([])), "/t"))


def test_write_refuses_to_clobber_unless_asked(tmp_path):
    root = tmp_path / "topo"
    write_topology(make_topology(["gfx1201"]), root)
    (root / "keep.txt").write_text("mine")
    with pytest.raises(TopologyError, match="already holds a topology"):
        write_topology(make_topology(["gfx1100"]), root)
    write_topology(make_topology(["gfx1100"]), root, overwrite=True)
    assert read_topology(root).gpus[0].family.name == "gfx1100" and (root / "keep.txt").read_text() == "mine"
    assert not (root / "nodes" / "2").exists()


def test_format_rejects_bad_values():
    for bad in ({"simd_count": -1}, {"simd_count": 1 << 64}, {"simd_count": "4"}, {"bad key": 1},
                {"simd_count": True}, {"sibling_map": (1, -1)}):
        with pytest.raises(TopologyError):
            format_properties(bad)
    t = make_topology(["gfx1100"])
    t.nodes[1].index = 0
    with pytest.raises(TopologyError, match="used twice"):
        topology_files(t)
    assert format_properties({"sibling_map": ()}) == b"sibling_map\n"     # the kernel's empty-map output
    assert parse_properties(b"sibling_map\n") == {"sibling_map": ()}


_KEYS = st.builds(str.__add__, st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
                  st.text("abcdefghijklmnopqrstuvwxyz0123456789_", max_size=20)).filter(lambda k: k != "sibling_map")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, st.integers(0, (1 << 64) - 1), max_size=12),
       st.one_of(st.none(), st.lists(st.integers(0, 1), max_size=64)))
def test_properties_format_parse_round_trip(props, sibling):
    if sibling is not None:
        props = dict(props, sibling_map=tuple(sibling))
    assert parse_properties(format_properties(props)) == props


# -- the kernel's derived values -------------------------------------------------------------------
def test_crc16_is_linux_crc16():
    assert crc16(b"123456789") == 0xBB3D          # CRC-16/ARC check value
    data = bytes(range(256)) * 3
    assert crc16(data) == ref_crc16(data)


def test_generate_gpu_id_inputs_and_fixups():
    kw = dict(location_id=0x0300, device_id=0x744C, local_mem_size=24 * GiB)
    gid = generate_gpu_id(**kw)
    assert gid == ref_gpu_id(3, 0, 0x744C, 24 * GiB, 1)
    assert generate_gpu_id(**kw, existing=[gid]) == (gid + 1) & 0xFFFF   # bumped past a taken id
    assert generate_gpu_id(**kw, existing=[gid, gid + 1]) == gid + 2
    assert generate_gpu_id(**kw, xcc_mask=0b1100) != gid                  # partition (XCC) is an input
    assert generate_gpu_id(**kw, domain=1) != gid
    # a buffer whose CRC is 0 maps to 1 (device id 16822 found by brute force with ref_crc16)
    zero = 16822
    assert ref_crc16(struct.pack("<8I", 0, 0x1002, 0, zero, 0, 0, 0, 1 << 16)) == 0
    assert generate_gpu_id(location_id=0, device_id=zero, local_mem_size=0) == 1
    assert generate_gpu_id(location_id=0, device_id=zero, local_mem_size=0, existing=[1]) == 2
    # older kernels: XOR of hash_32(word, 16)
    words = [0, 0x1002, 0, 0x744C, 3, 0, 24 * GiB >> 32, 1 << 16]
    expect = 0
    for w in words:
        expect ^= (w * 0x61C88647 & 0xFFFFFFFF) >> 16
    assert generate_gpu_id(**kw, method="hash32") == expect
    with pytest.raises(TopologyError):
        generate_gpu_id(**kw, method="md5")
    with pytest.raises(TopologyError):
        generate_gpu_id(**kw, xcc_mask=0)


def test_ctx_save_restore_sizes_match_real_nodes():
    # a real gfx1201 (R9700) node: simd_count 128, cwsr_size 30699520, ctl_stack_size 28672
    r9700 = {"gfx_target_version": 120001, "simd_count": 128, "simd_per_cu": 2, "array_count": 8,
             "simd_arrays_per_engine": 2, "lds_size_in_kb": 64, "num_xcc": 1}
    s = ctx_save_restore_sizes(r9700)
    assert (s["cwsr_size"], s["ctl_stack_size"], s["eop_buffer_size"]) == (30699520, 28672, 4096)
    assert s["debug_memory_size"] == 64 * 32 * 32
    # GFX10 control stack is capped at 0x7000 (80 CUs × 32 waves × 12 B would need 0x8000)
    navi21 = make_gpu_node(1, "gfx1030").properties
    assert ctx_save_restore_sizes(navi21)["ctl_stack_size"] == 0x7000
    # gfx950 saves its 160 KiB LDS per CU instead of 64 KiB
    mi350 = ctx_save_restore_sizes(make_gpu_node(1, "gfx950").properties)
    assert mi350["cwsr_size"] - mi350["ctl_stack_size"] == 32 * (0x80000 + 0x4000 + (160 << 10) + 0x1000)
    assert ctx_save_restore_sizes({"gfx_target_version": 0})["cwsr_size"] == 0


def test_capability_and_debug_prop_match_published_nodes():
    # TG-MOCK's gfx1100 node (§2): capability 671588992, debug_prop 1495. Its kernel predates the
    # change that dropped PRECISE_MEMORY_OPERATIONS from GFX11; everything else agrees bit for bit.
    assert gpu_capability("gfx1100") == 671588992 & ~T.CAP_TRAP_DEBUG_PRECISE_MEMORY_OPERATIONS_SUPPORTED
    assert gpu_debug_prop("gfx1100") == 1495
    cap = gpu_capability("gfx942")
    assert (cap & T.CAP_DOORBELL_TYPE_MASK) >> T.CAP_DOORBELL_TYPE_SHIFT == 2
    assert cap & T.CAP_PER_QUEUE_RESET_SUPPORTED and cap & T.CAP_SRAM_EDCSUPPORTED
    assert not gpu_capability("gfx942", sriov=True) & T.CAP_PER_QUEUE_RESET_SUPPORTED
    assert gpu_capability("gfx1201") & T.CAP_TRAP_DEBUG_PRECISE_ALU_OPERATIONS_SUPPORTED
    assert (gpu_capability("gfx942", asic_revision=1) & T.CAP_ASIC_REVISION_MASK) >> 22 == 1
    assert gpu_debug_prop("gfx942") == T.DBG_DISPATCH_INFO_ALWAYS_VALID | 7 | 30 << 4
    assert gpu_debug_prop("gfx90a") == 6 | 29 << 4                      # no always-valid ttmps on 9.4.2


def test_gpu_caches_follow_the_kernel_walk():
    caches = make_gpu_caches("gfx1100", 0x80001000)
    assert len(caches) == 206
    tcp = [c for c in caches if c["level"] == 1 and c["size"] == 32 and c["cache_line_size"] == 128]
    assert [c["processor_id_low"] for c in tcp[:3]] == [0x80001000, 0x80001001, 0x80001002]
    sqc = [c for c in caches if c["type"] == T.CACHE_TYPE_INSTRUCTION | T.CACHE_TYPE_HSACU]
    assert len(sqc) == 48 and sqc[1]["processor_id_low"] == 0x80001002 and sqc[0]["sibling_map"][:3] == (1, 1, 0)
    l2 = next(c for c in caches if c["level"] == 2)
    assert l2["size"] == 6144 and len(l2["sibling_map"]) == 32 * 12 and l2["sibling_map"][:9] == (1,) * 8 + (0,)
    # MI300X: 38 of 40 CUs per XCC; the 9-CU arrays still have 5 SQC groups
    assert len(make_gpu_caches("gfx942")) == 626
    assert len(make_gpu_caches("gfx90a")) == 110 + 2 * 56 + 1


# -- builders and accessors ------------------------------------------------------------------------
def test_make_gpu_node_options():
    n = make_gpu_node(3, "gfx1201", vram_size=32 * GiB, visible_vram=256 << 20, location_id=0x0A08,
                      domain=2, drm_render_minor=200, gpu_id=0x1234, unique_id=99, hive_id=5, io_link_to=1)
    assert (n.gpu_id, n.drm_render_minor, n.unique_id, n.hive_id, n.pci_bus_id) == (0x1234, 200, 99, 5, "0002:0a:01.0")
    assert [(b["heap_type"], b["size_in_bytes"]) for b in n.mem_banks] == [(1, 256 << 20), (2, 32 * GiB - (256 << 20))]
    assert n.vram_size == 32 * GiB and n.properties["mem_banks_count"] == 2
    assert n.io_links[0]["node_to"] == 1 and n.io_links[0]["node_from"] == 3
    auto = make_gpu_node(1, get_family(110000))
    assert auto.gpu_id == ref_gpu_id(3, 0, 0x744C, 24 * GiB, 1) and auto.drm_render_minor == 128


def test_make_cpu_node_and_accessors():
    c = make_cpu_node(0, cpu_cores=64, mem_size=512 * GiB, max_engine_clk_ccompute=3700)
    assert (c.cpu_cores_count, c.is_gpu, c.vram_size, c.get("max_engine_clk_ccompute")) == (64, False, 0, 3700)
    with pytest.raises(UnknownFamilyError, match="CPU node"):
        _ = c.family
    t = make_topology(["gfx942"])
    with pytest.raises(TopologyError, match=str(t.gpus[0].gpu_id)):
        t.gpu(1)
    assert t.node(1) is t.gpus[0]
    with pytest.raises(TopologyError):
        t.node(9)
    assert t.gpus[0].hive_id == 0 and len(t.gpus[0].io_links) == 1
    unknown = Node(index=5, properties={"simd_count": 8, "gfx_target_version": 90012})
    with pytest.raises(UnknownFamilyError, match="gfx90c"):
        _ = unknown.family


def test_make_topology_is_deterministic_and_unique():
    a = make_topology(["gfx942"] * 4, xgmi_hive=True)
    b = make_topology(["gfx942"] * 4, xgmi_hive=True)
    assert a == b and len(set(a.gpu_ids)) == 4
    assert [g.drm_render_minor for g in a.gpus] == [128, 129, 130, 131]
    assert all(len(g.io_links) == 4 and [l["node_to"] for l in g.io_links[1:]] == sorted(
        x for x in (1, 2, 3, 4) if x != g.index) for g in a.gpus)
    assert make_topology(["gfx942"] * 2, xgmi_hive=True, seed=1).gpus[0].hive_id != a.gpus[0].hive_id
