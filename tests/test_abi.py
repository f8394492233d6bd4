"""Tests for kfdtrace.abi.ioctl.

Three oracles: (1) a C compiler run on the system's kfd_ioctl.h through a probe generated from
that header (tests/abi_probe/gen_probe.py); (2) the reference's §1.3 ioctl table and §1.4 struct
layouts, pasted verbatim below and parsed; (3) hand-packed bytes (struct.pack at the reference's
offsets) for the decoder.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi import ioctl as k
from kfdtrace.errors import KfdtraceError

PROBE_DIR = Path(__file__).parent / "abi_probe"
_spec = importlib.util.spec_from_file_location("kfd_gen_probe", PROBE_DIR / "gen_probe.py")
gen_probe = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen_probe  # dataclasses look their module up there
_spec.loader.exec_module(gen_probe)

HEADER = Path(os.environ.get("KFDTRACE_KFD_HEADER", "/usr/include/linux/kfd_ioctl.h"))

# --------------------------------------------------------------------------------------------
# Oracle 1: the installed header, through a compiled probe
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if not HEADER.is_file():
        pytest.skip(f"no KFD header at {HEADER} (install linux-libc-dev or set KFDTRACE_KFD_HEADER)")
    cc = next((shutil.which(c) for c in ("cc", "gcc", "clang", "clang-22") if shutil.which(c)), None)
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang) on PATH to build the ABI probe")
    info = gen_probe.parse_header(HEADER.read_text())
    d = tmp_path_factory.mktemp("abi_probe")
    (d / "probe.c").write_text(gen_probe.probe_source(str(HEADER), info))
    r = subprocess.run([cc, "-std=gnu11", "-I", str(PROBE_DIR), "-o", str(d / "probe"), str(d / "probe.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"probe does not compile:\n{r.stderr}"
    out = subprocess.run([str(d / "probe")], capture_output=True, text=True, check=True).stdout
    return info, json.loads(out)


def test_probe_covers_every_struct_and_request_of_the_header(probe):
    info, data = probe
    text = gen_probe._strip(HEADER.read_text())
    # the generator found every struct definition and request #define in the header text
    assert set(data["structs"]) == set(re.findall(r"\bstruct\s+(kfd_\w+)\s*\{", text))
    assert set(data["requests"]) == set(re.findall(r"#\s*define\s+(AMDKFD_IOC_\w+)", text))
    assert len(data["structs"]) >= 40 and len(data["requests"]) >= 35  # KFD 1.11 has 43 / 35
    assert tuple(data["version"]) <= (k.KFD_IOCTL_MAJOR_VERSION, k.KFD_IOCTL_MINOR_VERSION)


def test_struct_sizes_offsets_and_signedness_match_the_header(probe):
    _, data = probe
    for name, hs in data["structs"].items():
        revs = k.STRUCT_REVISIONS.get(name)
        assert revs, f"header struct {name} has no Python definition"
        assert hs["size"] in revs, f"{name}: header size {hs['size']}, ours {sorted(revs)}"
        cls = revs[hs["size"]]
        assert ctypes.sizeof(cls) == hs["size"]
        layout = k.struct_layout(cls)
        for path, (off, size, signed) in hs["members"].items():
            head, *rest = path.split(".")
            ours = ".".join([k.RENAMED_FIELDS.get((name, head), head), *rest])
            assert ours in layout, f"{name}.{path} missing in Python struct"
            assert layout[ours][0] == off, f"{name}.{path}: offset {layout[ours][0]} != header {off}"
            if size >= 0:
                assert layout[ours][1] == size, f"{name}.{path}: size {layout[ours][1]} != header {size}"
            if signed >= 0:
                ctype = _field_ctype(cls, ours)
                is_signed = ctype(-1).value < 0
                assert is_signed == bool(signed), f"{name}.{path}: signedness differs"


def _field_ctype(cls, path):
    for part in path.split("."):
        for f in cls._fields_:
            if f[0] == part:
                cls = f[1]
                break
        else:  # member of an anonymous union/struct
            anon = next(f[1] for f in cls._fields_ if f[0] in getattr(cls, "_anonymous_", ()))
            return _field_ctype(anon, part)
    return cls


def test_request_numbers_match_the_header(probe):
    _, data = probe
    for cname, value in data["requests"].items():
        short = cname.removeprefix("AMDKFD_IOC_")
        d = k.lookup(value)
        assert d is not None and d.name == short, cname
        assert k.ioc_dir(value) == d.dir and k.ioc_type(value) == ord("K")
        assert k.ioc_size(value) in d.revisions, f"{cname}: size {k.ioc_size(value)} not accepted"
        assert k.request_for(short, k.ioc_size(value)) == value
        if k.ioc_size(value) == d.size:
            assert getattr(k, cname) == value, cname
    # the header's CREATE_QUEUE is the 88-byte pre-1.17 one; ours is 96; both map to nr 2
    assert data["requests"]["AMDKFD_IOC_CREATE_QUEUE"] == 0xC0584B02


VERSION_DEPENDENT = {"KFD_IOCTL_MINOR_VERSION", "AMDKFD_COMMAND_END", "AMDKFD_COMMAND_END_2"}


def test_every_header_constant_and_enumerator_matches(probe):
    _, data = probe
    assert len(data["constants"]) >= 100
    for name, value in data["constants"].items():
        assert name in k.HEADER_CONSTANTS, f"header constant {name} unknown to kfdtrace"
        if value < 0:  # (1 << 31) in an int context
            value &= 0xFFFFFFFF
        ours = k.HEADER_CONSTANTS[name]
        if name in VERSION_DEPENDENT:
            assert value <= ours, name
        else:
            assert ours == value, f"{name}: ours {ours:#x}, header {value:#x}"


def test_generator_parses_nested_and_flexible_members():
    info = gen_probe.parse_header("""
        struct kfd_outer { struct kfd_in a; __u32 arr[4];
          union { __u64 u1; struct kfd_in u2; };   /* anonymous */
          struct { __u32 x; __u32 y; } named;
          __s32 s; __u64 flex[]; };
        #define AMDKFD_IOC_OUTER AMDKFD_IOWR(0x01, struct kfd_outer)
        #define KFD_VAL (1 << 3)
        #define KFD_FN(x) (x)
        enum e { E_A, E_B = 5 };""")
    mem = {m.path: (m.flexible, m.scalar) for m in info.structs["kfd_outer"]}
    assert mem == {"a": (False, False), "arr": (False, False), "u1": (False, True),
                   "u2": (False, False), "named": (False, False), "named.x": (False, True),
                   "named.y": (False, True), "s": (False, True), "flex": (True, False)}
    assert info.requests == ["AMDKFD_IOC_OUTER"]
    assert info.constants == ["KFD_VAL", "E_A", "E_B"]
    with pytest.raises(ValueError, match="unsupported member"):
        gen_probe.parse_header("struct kfd_bad { __u32 a, b; };")


# --------------------------------------------------------------------------------------------
# Oracle 2: the reference (amd-kfd.md §1.3, §1.4), verbatim
# --------------------------------------------------------------------------------------------
REF_TABLE = """
| 0x01 | GET_VERSION | IOR | get_version_args | 8 | 0x80084b01 |
| 0x02 | CREATE_QUEUE | IOWR | create_queue_args | 96 | 0xc0604b02 |
| 0x03 | DESTROY_QUEUE | IOWR | destroy_queue_args | 8 | 0xc0084b03 |
| 0x04 | SET_MEMORY_POLICY | IOW | set_memory_policy_args | 32 | 0x40204b04 |
| 0x05 | GET_CLOCK_COUNTERS | IOWR | get_clock_counters_args | 40 | 0xc0284b05 |
| 0x06 | GET_PROCESS_APERTURES | IOR | get_process_apertures_args | 400 | 0x81904b06 |
| 0x07 | UPDATE_QUEUE | IOW | update_queue_args | 24 | 0x40184b07 |
| 0x08 | CREATE_EVENT | IOWR | create_event_args | 32 | 0xc0204b08 |
| 0x09 | DESTROY_EVENT | IOW | destroy_event_args | 8 | 0x40084b09 |
| 0x0a | SET_EVENT | IOW | set_event_args | 8 | 0x40084b0a |
| 0x0b | RESET_EVENT | IOW | reset_event_args | 8 | 0x40084b0b |
| 0x0c | WAIT_EVENTS | IOWR | wait_events_args | 24 | 0xc0184b0c |
| 0x0d | DBG_REGISTER_DEPRECATED | IOW | dbg_register_args | 8 | 0x40084b0d |
| 0x0e | DBG_UNREGISTER_DEPRECATED | IOW | dbg_unregister_args | 8 | 0x40084b0e |
| 0x0f | DBG_ADDRESS_WATCH_DEPRECATED | IOW | dbg_address_watch_args | 16 | 0x40104b0f |
| 0x10 | DBG_WAVE_CONTROL_DEPRECATED | IOW | dbg_wave_control_args | 16 | 0x40104b10 |
| 0x11 | SET_SCRATCH_BACKING_VA | IOWR | set_scratch_backing_va_args | 16 | 0xc0104b11 |
| 0x12 | GET_TILE_CONFIG | IOWR | get_tile_config_args | 40 | 0xc0284b12 |
| 0x13 | SET_TRAP_HANDLER | IOW | set_trap_handler_args | 24 | 0x40184b13 |
| 0x14 | GET_PROCESS_APERTURES_NEW | IOWR | get_process_apertures_new_args | 16 | 0xc0104b14 |
| 0x15 | ACQUIRE_VM | IOW | acquire_vm_args | 8 | 0x40084b15 |
| 0x16 | ALLOC_MEMORY_OF_GPU | IOWR | alloc_memory_of_gpu_args | 40 | 0xc0284b16 |
| 0x17 | FREE_MEMORY_OF_GPU | IOW | free_memory_of_gpu_args | 8 | 0x40084b17 |
| 0x18 | MAP_MEMORY_TO_GPU | IOWR | map_memory_to_gpu_args | 24 | 0xc0184b18 |
| 0x19 | UNMAP_MEMORY_FROM_GPU | IOWR | unmap_memory_from_gpu_args | 24 | 0xc0184b19 |
| 0x1a | SET_CU_MASK | IOW | set_cu_mask_args | 16 | 0x40104b1a |
| 0x1b | GET_QUEUE_WAVE_STATE | IOWR | get_queue_wave_state_args | 24 | 0xc0184b1b |
| 0x1c | GET_DMABUF_INFO | IOWR | get_dmabuf_info_args | 32 | 0xc0204b1c |
| 0x1d | IMPORT_DMABUF | IOWR | import_dmabuf_args | 24 | 0xc0184b1d |
| 0x1e | ALLOC_QUEUE_GWS | IOWR | alloc_queue_gws_args | 16 | 0xc0104b1e |
| 0x1f | SMI_EVENTS | IOWR | smi_events_args | 8 | 0xc0084b1f |
| 0x20 | SVM | IOWR | svm_args | 24 | 0xc0184b20 |
| 0x21 | SET_XNACK_MODE | IOWR | set_xnack_mode_args | 4 | 0xc0044b21 |
| 0x22 | CRIU_OP | IOWR | criu_args | 56 | 0xc0384b22 |
| 0x23 | AVAILABLE_MEMORY | IOWR | get_available_memory_args | 16 | 0xc0104b23 |
| 0x24 | EXPORT_DMABUF | IOWR | export_dmabuf_args | 16 | 0xc0104b24 |
| 0x25 | RUNTIME_ENABLE | IOWR | runtime_enable_args | 16 | 0xc0104b25 |
| 0x26 | DBG_TRAP | IOWR | dbg_trap_args | 32 | 0xc0204b26 |
| 0x27 | CREATE_PROCESS (1.19+) | IO (no arg) | – | 0 | 0x00004B27 |
"""
REF_DKMS = """
| 0x80 | IPC_IMPORT_HANDLE | 48 | 0xC0304B80 |
| 0x81 | IPC_EXPORT_HANDLE | 32 | 0xC0204B81 |
| 0x82 | DBG_TRAP_DEPRECATED | 40 | 0xC0284B82 |
| 0x83 | CROSS_MEMORY_COPY(_DEPRECATED) | 48 | 0xC0304B83 |
| 0x84 | RLC_SPM | 32 | 0xC0204B84 |
| 0x85 | PC_SAMPLE | 32 | 0xC0204B85 |
| 0x86 | PROFILER (ROCm 7 DKMS) | 40 | 0xC0284B86 |
"""
REF_LAYOUTS = """
- **kfd_ioctl_get_version_args** (8 B): major_version@0(u32), minor_version@4(u32)
- **kfd_ioctl_create_queue_args** (96 B): ring_base_address@0(u64), write_pointer_address@8(u64), read_pointer_address@16(u64), doorbell_offset@24(u64), ring_size@32(u32), gpu_id@36(u32), queue_type@40(u32), queue_percentage@44(u32), queue_priority@48(u32), queue_id@52(u32), eop_buffer_address@56(u64), eop_buffer_size@64(u64), ctx_save_restore_address@72(u64), ctx_save_restore_size@80(u32), ctl_stack_size@84(u32), sdma_engine_id@88(u32), pad@92(u32)
- **kfd_ioctl_destroy_queue_args** (8 B): queue_id@0(u32), pad@4(u32)
- **kfd_ioctl_update_queue_args** (24 B): ring_base_address@0(u64), queue_id@8(u32), ring_size@12(u32), queue_percentage@16(u32), queue_priority@20(u32)
- **kfd_ioctl_alloc_memory_of_gpu_args** (40 B): va_addr@0(u64), size@8(u64), handle@16(u64), mmap_offset@24(u64), gpu_id@32(u32), flags@36(u32)
- **kfd_ioctl_free_memory_of_gpu_args** (8 B): handle@0(u64)
- **kfd_ioctl_map_memory_to_gpu_args** (24 B): handle@0(u64), device_ids_array_ptr@8(u64), n_devices@16(u32), n_success@20(u32)
- **kfd_ioctl_unmap_memory_from_gpu_args** (24 B): handle@0(u64), device_ids_array_ptr@8(u64), n_devices@16(u32), n_success@20(u32)
- **kfd_ioctl_acquire_vm_args** (8 B): drm_fd@0(u32), gpu_id@4(u32)
- **kfd_ioctl_get_process_apertures_new_args** (16 B): kfd_process_device_apertures_ptr@0(u64), num_of_nodes@8(u32), pad@12(u32)
- **kfd_process_device_apertures** (56 B): lds_base@0(u64), lds_limit@8(u64), scratch_base@16(u64), scratch_limit@24(u64), gpuvm_base@32(u64), gpuvm_limit@40(u64), gpu_id@48(u32), pad@52(u32)
- **kfd_ioctl_create_event_args** (32 B): event_page_offset@0(u64), event_trigger_data@8(u32), event_type@12(u32), auto_reset@16(u32), node_id@20(u32), event_id@24(u32), event_slot_index@28(u32)
- **kfd_ioctl_destroy_event_args** (8 B): event_id@0(u32), pad@4(u32)
- **kfd_ioctl_set_event_args** (8 B): event_id@0(u32), pad@4(u32)
- **kfd_ioctl_reset_event_args** (8 B): event_id@0(u32), pad@4(u32)
- **kfd_ioctl_wait_events_args** (24 B): events_ptr@0(u64), num_events@8(u32), wait_for_all@12(u32), timeout@16(u32), wait_result@20(u32)
- **kfd_event_data** (48 B): union{memory_exception_data(32B) | hw_exception_data(16B) | signal_event_data(8B)}@0, kfd_event_data_ext@32(u64), event_id@40(u32), pad@44(u32)
- **kfd_memory_exception_failure** (16 B): NotPresent@0(u32), ReadOnly@4(u32), NoExecute@8(u32), imprecise@12(u32)
- **kfd_hsa_memory_exception_data** (32 B): failure@0(kfd_memory_exception_failure), va@16(u64), gpu_id@24(u32), ErrorType@28(u32)
- **kfd_hsa_hw_exception_data** (16 B): reset_type@0(u32), reset_cause@4(u32), memory_lost@8(u32), gpu_id@12(u32)
- **kfd_hsa_signal_event_data** (8 B): last_event_age@0(u64)
- **kfd_ioctl_set_memory_policy_args** (32 B): alternate_aperture_base@0(u64), alternate_aperture_size@8(u64), gpu_id@16(u32), default_policy@20(u32), alternate_policy@24(u32), pad@28(u32)
- **kfd_ioctl_get_clock_counters_args** (40 B): gpu_clock_counter@0(u64), cpu_clock_counter@8(u64), system_clock_counter@16(u64), system_clock_freq@24(u64), gpu_id@32(u32), pad@36(u32)
- **kfd_ioctl_set_scratch_backing_va_args** (16 B): va_addr@0(u64), gpu_id@8(u32), pad@12(u32)
- **kfd_ioctl_get_tile_config_args** (40 B): tile_config_ptr@0(u64), macro_tile_config_ptr@8(u64), num_tile_configs@16(u32), num_macro_tile_configs@20(u32), gpu_id@24(u32), gb_addr_config@28(u32), num_banks@32(u32), num_ranks@36(u32)
- **kfd_ioctl_set_trap_handler_args** (24 B): tba_addr@0(u64), tma_addr@8(u64), gpu_id@16(u32), pad@20(u32)
- **kfd_ioctl_get_dmabuf_info_args** (32 B): size@0(u64), metadata_ptr@8(u64), metadata_size@16(u32), gpu_id@20(u32), flags@24(u32), dmabuf_fd@28(u32)
- **kfd_ioctl_import_dmabuf_args** (24 B): va_addr@0(u64), handle@8(u64), gpu_id@16(u32), dmabuf_fd@20(u32)
- **kfd_ioctl_export_dmabuf_args** (16 B): handle@0(u64), flags@8(u32), dmabuf_fd@12(u32)
- **kfd_ioctl_svm_args** (24 B): start_addr@0(u64), size@8(u64), op@16(u32), nattr@20(u32), attrs[0]@24(kfd_ioctl_svm_attribute)
- **kfd_ioctl_svm_attribute** (8 B): type@0(u32), value@4(u32)
- **kfd_ioctl_set_xnack_mode_args** (4 B): xnack_enabled@0(s32)
- **kfd_ioctl_get_available_memory_args** (16 B): available@0(u64), gpu_id@8(u32), pad@12(u32)
- **kfd_ioctl_set_cu_mask_args** (16 B): queue_id@0(u32), num_cu_mask@4(u32), cu_mask_ptr@8(u64)
- **kfd_ioctl_get_queue_wave_state_args** (24 B): ctl_stack_address@0(u64), ctl_stack_used_size@8(u32), save_area_used_size@12(u32), queue_id@16(u32), pad@20(u32)
- **kfd_ioctl_alloc_queue_gws_args** (16 B): queue_id@0(u32), num_gws@4(u32), first_gws@8(u32), pad@12(u32)
- **kfd_ioctl_smi_events_args** (8 B): gpuid@0(u32), anon_fd@4(u32)
- **kfd_ioctl_runtime_enable_args** (16 B): r_debug@0(u64), mode_mask@8(u32), capabilities_mask@12(u32)
- **kfd_ioctl_criu_args** (56 B): devices@0(u64), bos@8(u64), priv_data@16(u64), priv_data_size@24(u64), num_devices@32(u32), num_bos@36(u32), num_objects@40(u32), pid@44(u32), op@48(u32)
- **kfd_ioctl_dbg_trap_args** (32 B): pid@0(u32), op@4(u32), union of 14 op-specific structs (enable, send_runtime_event, …, device_snapshot; max 24 B)@8
"""
_CTYPES = {"u64": ctypes.c_uint64, "u32": ctypes.c_uint32, "s32": ctypes.c_int32}
_DIRS = {"IOR": k.IOC_READ, "IOW": k.IOC_WRITE, "IOWR": k.IOC_READ | k.IOC_WRITE, "IO (no arg)": k.IOC_NONE}


def _rows(table):
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.strip().splitlines()]


def test_reference_ioctl_table():
    rows = _rows(REF_TABLE)
    assert len(rows) == 39
    for nr, name, dirs, sname, size, cmd in rows:
        name, nr, size, cmd = name.split(" ")[0], int(nr, 16), int(size), int(cmd, 16)
        d = k.IOCTLS[nr]
        assert (d.name, d.dir, d.size, d.request) == (name, _DIRS[dirs], size, cmd)
        assert getattr(k, "AMDKFD_IOC_" + name) == cmd and k.IOCTLS_BY_NAME[name] is d
        assert k.lookup(cmd) is d and k.request_for(name) == cmd and not d.dkms
        if sname == "–":
            assert d.struct is None and d.revisions == {}
        else:
            assert d.struct is k.STRUCTS["kfd_ioctl_" + sname] and ctypes.sizeof(d.struct) == size


def test_reference_dkms_table():
    for nr, name, size, cmd in _rows(REF_DKMS):
        name = re.sub(r"\s+\(.*\)$", "", name).replace("(", "").replace(")", "")
        d = k.IOCTLS[int(nr, 16)]
        assert (d.name, d.size, d.request, d.dkms) == (name, int(size), int(cmd, 16), True)
        assert ctypes.sizeof(d.struct) == int(size) and getattr(k, "AMDKFD_IOC_" + name) == int(cmd, 16)
    assert k.request_for("CROSS_MEMORY_COPY") == 0xC0304B83
    assert set(k.IOCTLS) == set(range(0x01, 0x28)) | set(range(0x80, 0x87))


def test_reference_struct_layouts():
    lines = re.findall(r"- \*\*(\w+)\*\* \((\d+) B\): (.*)", REF_LAYOUTS)
    assert len(lines) == 40
    for sname, size, items in lines:
        cls = k.STRUCTS[sname]
        assert ctypes.sizeof(cls) == int(size), sname
        layout = k.struct_layout(cls)
        for fname, arr, off, ftype in re.findall(r"(\w+)(\[\d+\])?@(\d+)\((\w+)\)", items):
            fname = k.RENAMED_FIELDS.get((sname, fname), fname)
            assert layout[fname][0] == int(off), f"{sname}.{fname}"
            ctype = _field_ctype(cls, fname)
            if arr:
                assert ctype._type_.__name__ == ftype and ctype._length_ == int(arr[1:-1])
            elif ftype in _CTYPES:
                assert ctype is _CTYPES[ftype], f"{sname}.{fname} is {ctype}, reference says {ftype}"
            else:
                assert ctype.__name__ == ftype
    # union members of kfd_event_data and kfd_ioctl_dbg_trap_args sit at @0 / @8
    ev = k.struct_layout(k.kfd_event_data)
    assert ev["memory_exception_data"] == (0, 32) and ev["hw_exception_data"] == (0, 16)
    assert ev["signal_event_data"] == (0, 8) and ev["kfd_event_data_ext"] == (32, 8)
    dbg = k.struct_layout(k.kfd_ioctl_dbg_trap_args)
    members = [f[0] for f in k._kfd_ioctl_dbg_trap_union._fields_]
    assert len(members) == 14 and all(dbg[m][0] == 8 for m in members)
    assert max(dbg[m][1] for m in members) == 24


def test_newer_and_dkms_struct_layouts():
    """Structs newer than the installed header: sizes/offsets from the reference's 'Newest-tree
    deltas' and DKMS notes, and from the autogenerated ctypes of the ROCm header it cites."""
    expect = {
        "kfd_dbg_device_info_entry": (128, {"gpu_id": 56, "debug_prop": 116, "capability2": 120, "pad": 124}),
        "kfd_ioctl_pc_sample_args": (32, {"sample_info_ptr": 0, "num_sample_info": 8, "op": 12, "gpu_id": 16,
                                          "trace_id": 20, "flags": 24, "version": 28}),
        "kfd_pc_sample_info": (40, {"flags": 24, "method": 32, "type": 36}),
        "kfd_ioctl_profiler_args": (40, {"op": 0, "pc_sample": 8, "pmc": 8, "version": 8}),
        "kfd_ioctl_ipc_import_handle_args": (48, {"mmap_offset": 16, "share_handle": 24, "gpu_id": 40, "flags": 44}),
        "kfd_ioctl_ipc_export_handle_args": (32, {"share_handle": 8, "gpu_id": 24, "flags": 28}),
        "kfd_ioctl_cross_memory_copy_deprecated_args": (48, {"src_mem_range_array": 8, "bytes_copied": 40}),
        "kfd_ioctl_dbg_trap_args_deprecated": (40, {"pid": 16, "op": 20, "data4": 36}),
        "kfd_ioctl_spm_args": (32, {"buf_size": 8, "op": 12, "has_data_loss": 28}),
        "kfd_queue_snapshot_entry": (64, {"ctx_save_restore_address": 32, "queue_id": 40, "reserved": 60}),
        "kfd_context_save_area_header": (40, {"wave_state.wave_state_size": 12, "debug_offset": 16,
                                              "err_payload_addr": 24, "reserved1": 36}),
        "kfd_runtime_info": (16, {"runtime_state": 8, "ttmp_setup": 12}),
        "kfd_criu_bo_bucket": (48, {"restored_offset": 24, "dmabuf_fd": 40}),
        "kfd_ioctl_dbg_trap_enable_args": (24, {"rinfo_size": 16, "dbg_fd": 20}),
        "kfd_ioctl_dbg_trap_set_node_address_watch_args": (24, {"mode": 8, "id": 20}),
        "kfd_ioctl_dbg_trap_query_exception_info_args": (24, {"exception_code": 16, "clear_exception": 20}),
    }
    for name, (size, offs) in expect.items():
        cls = k.STRUCTS[name]
        assert ctypes.sizeof(cls) == size, name
        layout = k.struct_layout(cls)
        assert {p: layout[p][0] for p in offs} == offs, name
    assert ctypes.sizeof(k.STRUCT_REVISIONS["kfd_dbg_device_info_entry"][120]) == 120
    assert ctypes.sizeof(k.kfd_ioctl_create_queue_args_88) == 88


def test_reference_constants():
    assert [(f.name, f.value) for f in k.AllocFlags] == [
        ("VRAM", 0x1), ("GTT", 0x2), ("USERPTR", 0x4), ("DOORBELL", 0x8), ("MMIO_REMAP", 0x10),
        ("CONTIGUOUS", 0x00800000), ("EXT_COHERENT", 0x01000000), ("UNCACHED", 0x02000000),
        ("COHERENT", 0x04000000), ("AQL_QUEUE_MEM", 0x08000000), ("NO_SUBSTITUTE", 0x10000000),
        ("PUBLIC", 0x20000000), ("EXECUTABLE", 0x40000000), ("WRITABLE", 0x80000000)]
    assert [int(q) for q in k.QueueType] == [0, 1, 2, 3, 4] and k.QueueType.SDMA_BY_ENG_ID == 4
    assert [e.name for e in k.EventType] == ["SIGNAL", "NODECHANGE", "DEVICESTATECHANGE", "HW_EXCEPTION",
                                             "SYSTEM_EVENT", "DEBUG_EVENT", "PROFILE_EVENT", "QUEUE_EVENT", "MEMORY"]
    assert [int(e) for e in k.EventType] == list(range(9))
    assert (k.WaitResult.COMPLETE, k.WaitResult.TIMEOUT, k.WaitResult.FAIL) == (0, 1, 2)
    assert (k.KFD_EVENT_TIMEOUT_IMMEDIATE, k.KFD_EVENT_TIMEOUT_INFINITE) == (0, 0xFFFFFFFF)
    assert (k.KFD_SIGNAL_EVENT_LIMIT, k.KFD_FIRST_NONSIGNAL_EVENT_ID) == (4096, 0x40000000)
    assert k.SmiEvent.PROCESS_END == 13 and k.SmiEvent.ALL_PROCESS == 64
    assert k.KFD_SMI_EVENT_MASK_FROM_INDEX(k.SmiEvent.VMFAULT) == 1 and k.KFD_SMI_EVENT_MSG_SIZE == 96
    assert [int(a) for a in k.SvmAttrType] == list(range(8)) and k.SvmAttrType.GRANULARITY == 7
    assert [f.value for f in k.SvmFlags] == [1 << i for i in range(8)]
    assert (k.SvmLocation.SYSMEM, k.SvmLocation.UNDEFINED) == (0, 0xFFFFFFFF)
    assert (k.SvmOp.SET_ATTR, k.SvmOp.GET_ATTR) == (0, 1)
    assert (k.CachePolicy.COHERENT, k.CachePolicy.NONCOHERENT, k.KFD_PROC_FLAG_MFMA_HIGH_PRECISION) == (0, 1, 1)
    assert [int(c) for c in k.CriuOp] == [0, 1, 2, 3, 4] and len(k.DbgTrapOp) == 15
    assert (k.RuntimeEnableMode.ENABLE, k.RuntimeEnableMode.TTMP_SAVE) == (1, 2)
    assert [int(e) for e in k.ExceptionCode if 1 <= e <= 31] == [1, 2, 3, 4, 5, 6, *range(16, 24), 30, 31]
    assert [int(e) for e in k.ExceptionCode if 32 <= e < 50] == [32, 33, 34, 35, 36, 48, 49]
    assert k.KFD_EC_MASK(k.ExceptionCode.QUEUE_NEW) == 1 << 30
    assert k.KFD_EC_MASK_PROCESS == (1 << 47) | (1 << 48)
    assert (k.MmioRemap.HDP_MEM_FLUSH_CNTL, k.MmioRemap.HDP_REG_FLUSH_CNTL) == (0, 4)
    assert k.DbgTrapFlags.LDS_OUT_OF_ADDR_RANGE == 4 and k.KFD_INVALID_FD == 0xFFFFFFFF
    assert k.exception_mask_names(k.KFD_EC_MASK(33) | k.KFD_EC_MASK(48)) == [
        "EC_DEVICE_MEMORY_VIOLATION", "EC_PROCESS_RUNTIME"]


# --------------------------------------------------------------------------------------------
# Lookup, revisions, zero-extension
# --------------------------------------------------------------------------------------------
CQ_88 = "<QQQQIIIIIIQQQII"


def _cq_bytes(new: bool) -> bytes:
    b = struct.pack(CQ_88, 0x7F0000001000, 0x7F0000002000, 0x7F0000002008, 0, 0x10000, 0xBEEF,
                    int(k.QueueType.COMPUTE_AQL), 100, 7, 0, 0x7F0000003000, 4096, 0x7F0000100000,
                    0x2C2000, 0x6000)
    return b + struct.pack("<II", 3, 0x400) if new else b


def test_lookup_by_nr_accepts_88_and_96_byte_create_queue():
    d96, d88 = k.lookup(0xC0604B02), k.lookup(0xC0584B02)
    assert d96 is d88 is k.IOCTLS[2] and d96.name == "CREATE_QUEUE"
    assert set(d96.revisions) == {88, 96} and d96.revisions[88] is k.kfd_ioctl_create_queue_args_88
    assert k.AMDKFD_IOC_CREATE_QUEUE == 0xC0604B02 == k.request_for("AMDKFD_IOC_CREATE_QUEUE")
    assert k.request_for("CREATE_QUEUE", 88) == 0xC0584B02
    # dir bits are not looked at (the kernel uses its own table entry)
    assert k.lookup(k._IOC(k.IOC_READ, "K", 2, 96)) is d96
    assert k.lookup(k._IOC(3, "d", 2, 96)) is None and k.lookup(k._IOC(3, "K", 0x50, 8)) is None
    assert k.ioctl_name(0xC0584B02) == "CREATE_QUEUE"


def test_decode_create_queue_both_revisions():
    for req, new in ((0xC0604B02, True), (0xC0584B02, False)):
        out = k.decode_ioctl(req, _cq_bytes(new))
        f = out["fields"]
        assert (out["nr"], out["name"], out["size"]) == (2, "CREATE_QUEUE", 96 if new else 88)
        assert f["ring_base_address"] == 0x7F0000001000 and f["gpu_id"] == 0xBEEF
        assert f["ring_size"] == 0x10000 and f["queue_priority"] == 7
        assert f["ctx_save_restore_size"] == 0x2C2000 and f["ctl_stack_size"] == 0x6000
        assert out["symbols"]["queue_type"] == "COMPUTE_AQL"
        if new:
            assert (f["sdma_engine_id"], f["metadata_ring_size"]) == (3, 0x400)
        else:
            assert "sdma_engine_id" not in f and len(f) == 15


def test_kernel_zero_extension_and_copy_back():
    s = k.parse_args(0xC0584B02, _cq_bytes(False), kernel_view=True)
    assert type(s) is k.kfd_ioctl_create_queue_args
    assert (s.ctl_stack_size, s.sdma_engine_id, s.metadata_ring_size) == (0x6000, 0, 0)
    # a size without a revision (hypothetical 80-byte struct) is zero-extended into the newest
    s80 = k.parse_args(k.request_for("CREATE_QUEUE", 80), _cq_bytes(False)[:80])
    assert type(s80) is k.kfd_ioctl_create_queue_args and s80.ctx_save_restore_size == 0
    assert s80.ctx_save_restore_address == 0x7F0000100000
    # the kernel fills outputs and copies back only the user's 88 bytes
    s.doorbell_offset, s.queue_id = 0xC000000000000000 | (0xBEEF << 46) | 0x10, 5
    back = k.pack_args(0xC0584B02, s)
    assert len(back) == 88
    assert struct.unpack_from("<Q", back, 24)[0] == 0xC000000000000000 | (0xBEEF << 46) | 0x10
    assert struct.unpack_from("<I", back, 52)[0] == 5 and back[56:] == _cq_bytes(False)[56:]
    # a larger-than-known user struct: extra bytes are reported and preserved on copy-back
    big = _cq_bytes(True) + b"\xAA" * 8
    out = k.decode_ioctl(k.request_for("CREATE_QUEUE", 104), big)
    assert out["size"] == 104 and out["extra"] == "aa" * 8 and out["fields"]["sdma_engine_id"] == 3
    s104 = k.parse_args(k.request_for("CREATE_QUEUE", 104), big)
    assert k.pack_args(k.request_for("CREATE_QUEUE", 104), s104, original=big) == big


def test_read_only_ioctl_kernel_view_ignores_input():
    req = k.AMDKFD_IOC_GET_VERSION
    assert k.parse_args(req, struct.pack("<II", 1, 9)).minor_version == 9
    assert k.parse_args(req, struct.pack("<II", 1, 9), kernel_view=True).minor_version == 0


def test_bad_input_raises_abi_error():
    with pytest.raises(k.AbiError, match=r"CREATE_QUEUE: argument is 40 bytes .* says 96 bytes"):
        k.parse_args(k.AMDKFD_IOC_CREATE_QUEUE, bytes(40))
    with pytest.raises(KfdtraceError, match="not a known KFD ioctl"):
        k.parse_args(k._IOC(3, "K", 0x60, 8), bytes(8))
    with pytest.raises(k.AbiError, match="truncated"):
        k.decode_ioctl(k.AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, bytes(39))
    with pytest.raises(k.AbiError, match="no KFD ioctl named 'NOPE'"):
        k.request_for("NOPE")
    with pytest.raises(k.AbiError, match="size"):
        k.request_for("SVM", 1 << 14)


# --------------------------------------------------------------------------------------------
# Decoder, one test per kind of argument
# --------------------------------------------------------------------------------------------
def test_decode_alloc_memory_flags():
    flags = int(k.AllocFlags.VRAM | k.AllocFlags.NO_SUBSTITUTE | k.AllocFlags.WRITABLE | k.AllocFlags.EXECUTABLE)
    raw = struct.pack("<QQQQII", 0x7FFF00000000, 1 << 21, 0, 0, 0x1002, flags)
    out = k.decode_ioctl(0xC0284B16, raw)
    assert out["fields"] == {"va_addr": 0x7FFF00000000, "size": 1 << 21, "handle": 0, "mmap_offset": 0,
                             "gpu_id": 0x1002, "flags": 0xD0000001}
    assert out["symbols"]["flags"] == "VRAM|NO_SUBSTITUTE|EXECUTABLE|WRITABLE"


def test_decode_wait_events_and_event_data_union():
    out = k.decode_ioctl(k.AMDKFD_IOC_WAIT_EVENTS, struct.pack("<QIIII", 0x5000, 2, 1, 0xFFFFFFFF, 1))
    assert out["fields"] == {"events_ptr": 0x5000, "num_events": 2, "wait_for_all": 1,
                             "timeout": 0xFFFFFFFF, "wait_result": 1}
    assert out["symbols"]["wait_result"] == "TIMEOUT"
    ev = struct.pack("<IIIIQII", 1, 0, 1, 0, 0x7F00DEAD0000, 0x1002, 2) + struct.pack("<QII", 0, 7, 0)
    d = k.struct_to_dict(k.kfd_event_data.from_buffer_copy(ev))
    assert d["event_id"] == 7 and d["memory_exception_data"]["va"] == 0x7F00DEAD0000
    assert d["memory_exception_data"]["failure"] == {"NotPresent": 1, "ReadOnly": 0, "NoExecute": 1, "imprecise": 0}
    assert d["memory_exception_data"]["ErrorType"] == k.MemErrorType.POISON_CONSUMED
    assert d["hw_exception_data"]["reset_type"] == 1 and d["signal_event_data"]["last_event_age"] == 1
    args = k.parse_args(k.AMDKFD_IOC_WAIT_EVENTS, struct.pack("<QIIII", 0x5000, 2, 1, 0, 0))
    (p, addr, n), = k.payload_extents("WAIT_EVENTS", args)
    assert (addr, n, p.direction, p.elem_struct) == (0x5000, 96, "inout", k.kfd_event_data)


def test_decode_svm_trailing_attributes():
    attrs = [(k.SvmAttrType.PREFERRED_LOC, 0x1002), (k.SvmAttrType.SET_FLAGS, 0x3),
             (k.SvmAttrType.ACCESS, 0x1002)]
    raw = struct.pack("<QQII", 0x7F0000000000, 1 << 20, 0, 3) + b"".join(struct.pack("<II", t, v) for t, v in attrs)
    req = k.request_for("SVM", 24 + 8 * 3)
    assert req == 0xC0304B20 and k.lookup(req).name == "SVM"
    out = k.decode_ioctl(req, raw)
    assert out["size"] == 48 and out["fields"]["nattr"] == 3
    assert out["fields"]["attrs"] == [{"type": 0, "value": 0x1002}, {"type": 5, "value": 3},
                                      {"type": 2, "value": 0x1002}]
    assert out["symbols"]["attrs[1].type"] == "SET_FLAGS" and out["symbols"]["attrs[1].value"] == "HOST_ACCESS|COHERENT"
    assert out["symbols"]["attrs[0].value"] == "gpu 0x1002" and out["symbols"]["op"] == "SET_ATTR"
    assert "notes" not in out
    s = k.parse_args(req, raw)
    assert ctypes.sizeof(s) == 48 and s.attrs[2].type == 2
    # nattr claims more than fits: decoded what is there, and said so
    short = k.decode_ioctl(k.request_for("SVM", 32), raw[:32])
    assert len(short["fields"]["attrs"]) == 1 and "EINVAL" in short["notes"][0]


def test_decode_dbg_trap_selects_union_member_by_op():
    raw = struct.pack("<IIQIIII", 1234, k.DbgTrapOp.SET_NODE_ADDRESS_WATCH, 0x7F0000004000, 3, 0xFFF, 0x1002, 0)
    out = k.decode_ioctl(k.AMDKFD_IOC_DBG_TRAP, raw)
    assert out["fields"] == {"pid": 1234, "op": 8, "set_node_address_watch": {
        "address": 0x7F0000004000, "mode": 3, "mask": 0xFFF, "gpu_id": 0x1002, "id": 0}}
    assert out["symbols"] == {"op": "SET_NODE_ADDRESS_WATCH", "set_node_address_watch.mode": "ALL"}
    assert k.decode_ioctl(k.AMDKFD_IOC_DBG_TRAP, struct.pack("<II", 1, 1) + bytes(24))["fields"] == {"pid": 1, "op": 1}
    odd = k.decode_ioctl(k.AMDKFD_IOC_DBG_TRAP, struct.pack("<II", 1, 99) + bytes(range(24)))
    assert odd["fields"]["args_raw"] == bytes(range(24)).hex() and "99" in odd["notes"][0]
    snap = k.parse_args(k.AMDKFD_IOC_DBG_TRAP, struct.pack("<IIQQII", 1, 13, 0, 0x9000, 3, 64))
    (p, addr, n), = k.payload_extents("DBG_TRAP", snap)
    assert (addr, n, p.elem_struct) == (0x9000, 192, k.kfd_queue_snapshot_entry)
    snap.op = 14  # same bytes, other op: the queue-snapshot payload no longer applies
    assert [x[0].ptr_field for x in k.payload_extents("DBG_TRAP", snap)] == ["device_snapshot.snapshot_buf_ptr"]


def test_decode_arrays_and_small_kinds():
    ap = b"".join(struct.pack("<QQQQQQII", 1 << 48, (1 << 48) | 0xFFFFFFFF, 2 << 48, (2 << 48) | 0xFFFFFFFF,
                              0x1000000, (1 << 47) - 1, 0x1000 + i, 0) for i in range(7))
    out = k.decode_ioctl(k.AMDKFD_IOC_GET_PROCESS_APERTURES, ap + struct.pack("<II", 2, 0))
    assert len(out["fields"]["process_apertures"]) == 7 and out["fields"]["num_of_nodes"] == 2
    assert out["fields"]["process_apertures"][6]["gpu_id"] == 0x1006
    assert out["fields"]["process_apertures"][0]["scratch_base"] == 2 << 48
    ipc = k.decode_ioctl(k.AMDKFD_IOC_IPC_EXPORT_HANDLE, struct.pack("<Q4III", 0x100000001, 9, 8, 7, 6, 0x1002, 0))
    assert ipc["fields"]["share_handle"] == [9, 8, 7, 6] and ipc["name"] == "IPC_EXPORT_HANDLE"
    prof = k.decode_ioctl(k.AMDKFD_IOC_PROFILER, struct.pack("<IIQIIIIII", 1, 0, 0xA000, 2, 3, 0x1002, 0, 0, 1))
    assert prof["fields"] == {"op": 1, "pc_sample": {"sample_info_ptr": 0xA000, "num_sample_info": 2, "op": 3,
                                                     "gpu_id": 0x1002, "trace_id": 0, "flags": 0, "version": 1}}
    assert k.decode_ioctl(k.AMDKFD_IOC_CREATE_PROCESS, b"") == {
        "nr": 0x27, "name": "CREATE_PROCESS", "size": 0, "fields": {}}
    assert k.decode_ioctl(k.AMDKFD_IOC_SET_XNACK_MODE, struct.pack("<i", -1))["fields"] == {"xnack_enabled": -1}


def test_unknown_requests_decode_raw():
    req = k._IOC(3, "K", 0x50, 4)
    assert k.decode_ioctl(req, b"\x01\x02\x03\x04") == {"nr": 0x50, "name": "UNKNOWN_0xC0044B50", "size": 4,
                                                         "raw": "01020304"}
    drm = k._IOC(3, "d", 0x02, 8)  # a DRM ioctl with an nr KFD also uses
    out = k.decode_ioctl(drm, bytes(8))
    assert out["name"] == f"UNKNOWN_0x{drm:08X}" and out["raw"] == "00" * 8


def test_every_ioctl_decodes_every_field_from_its_bytes():
    """For each ioctl at its newest size: every integer field in the decode equals the bytes at
    that field's offset (the layout itself is checked against the header and the reference)."""
    for d in k.IOCTLS.values():
        raw = bytes((i * 37 + d.nr) & 0xFF for i in range(d.size))
        out = k.decode_ioctl(d.request, raw)
        assert (out["nr"], out["name"], out["size"]) == (d.nr, d.name, d.size)
        cls = k.struct_for_size(d, d.size)
        checked = 0
        for path, (off, size) in k.struct_layout(cls).items():
            v = out["fields"]
            try:
                for part in path.split("."):
                    v = v[part]
            except KeyError:
                continue  # member of an unselected union arm
            if isinstance(v, int):
                signed = _field_ctype(cls, path)(-1).value < 0
                assert v == int.from_bytes(raw[off:off + size], "little", signed=signed), f"{d.name}.{path}"
                checked += 1
        assert checked or d.size == 0 or d.name in ("DBG_TRAP", "PROFILER"), d.name


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(k.IOCTLS)), st.data())
def test_parse_pack_roundtrip(nr, data):
    d = k.IOCTLS[nr]
    raw = data.draw(st.binary(min_size=d.size, max_size=d.size))
    assert k.pack_args(d.request, k.parse_args(d.request, raw)) == raw


# --------------------------------------------------------------------------------------------
# mmap offsets, doorbells, handles, pointer payload table
# --------------------------------------------------------------------------------------------
def test_mmap_offset_encoding():
    gpu = 0xBEEF
    v = k.kfd_mmap_offset(k.KFD_MMAP_TYPE_DOORBELL, gpu, 0x10)
    assert v == 0xC000000000000000 | gpu << 46 | 0x10
    assert k.split_kfd_mmap_offset(v) == (k.KFD_MMAP_TYPE_DOORBELL, gpu, 0x10)
    assert k.kfd_mmap_offset(3, gpu, 0x10) == v  # bare 2-bit type
    assert k.kfd_mmap_offset(k.KFD_MMAP_TYPE_EVENTS, 0) == 0x8000000000000000
    assert k.kfd_mmap_offset(k.KFD_MMAP_TYPE_MMIO, 1) == 1 << 46
    assert k.KFD_MMAP_TYPE_RESERVED_MEM == 0x4000000000000000 and k.KFD_MMAP_GPU_ID(0x1_0001) == 1 << 46
    assert k.split_doorbell_offset(v | 0x1008) == (v & ~0x1FFF, 0x1018)
    for bad in ((k.KFD_MMAP_TYPE_DOORBELL | 1, 1, 0), (3, 1 << 16, 0), (3, 1, 1 << 46)):
        with pytest.raises(k.AbiError):
            k.kfd_mmap_offset(*bad)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([k.KFD_MMAP_TYPE_DOORBELL, k.KFD_MMAP_TYPE_EVENTS, k.KFD_MMAP_TYPE_RESERVED_MEM,
                        k.KFD_MMAP_TYPE_MMIO]),
       st.integers(0, 0xFFFF), st.integers(0, (1 << 46) - 1))
def test_mmap_offset_roundtrip(mtype, gpu_id, offset):
    v = k.kfd_mmap_offset(mtype, gpu_id, offset)
    assert 0 <= v < 1 << 64 and k.split_kfd_mmap_offset(v) == (mtype, gpu_id, offset)


def test_handles():
    h = k.make_handle(0xBEEF, 7)
    assert h == 0xBEEF00000007 and k.handle_gpu_id(h) == 0xBEEF and k.handle_idr(h) == 7
    with pytest.raises(k.AbiError):
        k.make_handle(1 << 32, 0)
    assert k.DOORBELL_SLICE_SIZE == 8192


def test_pointer_payload_table():
    for name, payloads in k.POINTER_PAYLOADS.items():
        d = k.IOCTLS_BY_NAME[name]
        s = d.struct()
        for p in payloads:
            assert p.direction in ("in", "out", "inout")
            for path in filter(None, (p.ptr_field, p.count_field, p.elem_size_field)):
                assert isinstance(k._get_path(s, path), int), f"{name}: {path}"
            if p.elem_struct is not None and p.elem_size is not None:
                assert ctypes.sizeof(p.elem_struct) == p.elem_size
    assert {"MAP_MEMORY_TO_GPU", "UNMAP_MEMORY_FROM_GPU", "GET_PROCESS_APERTURES_NEW", "WAIT_EVENTS",
            "GET_DMABUF_INFO", "SET_CU_MASK", "GET_TILE_CONFIG", "CRIU_OP", "DBG_TRAP"} <= set(k.POINTER_PAYLOADS)
    cu = k.parse_args(k.AMDKFD_IOC_SET_CU_MASK, struct.pack("<IIQ", 1, 64, 0x6000))
    assert [(a, n) for _, a, n in k.payload_extents("SET_CU_MASK", cu)] == [(0x6000, 8)]
    cu.num_cu_mask = 4096  # the kernel reads at most 1024 bits
    assert k.payload_extents("SET_CU_MASK", cu)[0][2] == 128
    m = k.parse_args(k.AMDKFD_IOC_MAP_MEMORY_TO_GPU, struct.pack("<QQII", 1 << 32, 0x7000, 3, 0))
    assert [(a, n) for _, a, n in k.payload_extents("MAP_MEMORY_TO_GPU", m)] == [(0x7000, 12)]
    tile = k.parse_args(k.AMDKFD_IOC_GET_TILE_CONFIG, struct.pack("<QQIIIIII", 0x100, 0, 32, 16, 1, 0, 0, 0))
    assert [(a, n) for _, a, n in k.payload_extents("GET_TILE_CONFIG", tile)] == [(0x100, 128)]
    rd = k.parse_args(k.AMDKFD_IOC_RUNTIME_ENABLE, struct.pack("<QII", 0x8000, 1, 0))
    assert k.payload_extents("RUNTIME_ENABLE", rd) == []  # r_debug size is not knowable
