"""The KFD ioctl ABI (`include/uapi/linux/kfd_ioctl.h`, KFD 1.22, plus ROCm's DKMS-only 0x80-0x86).

Everything that crosses /dev/kfd is raw bytes; this module gives them names. It holds:

* the Linux `_IOC` request encoding and one `AMDKFD_IOC_*` constant per ioctl (newest size);
* ctypes structures for every argument struct, named exactly as the header (older revisions of
  structs that grew carry their size as suffix, e.g. `kfd_ioctl_create_queue_args_88`);
* flags and enums (`KFD_IOC_*`, `KFD_IOCTL_SVM_*`, `EC_*`, ...) as IntEnum/IntFlag classes, and
  `HEADER_CONSTANTS`, the same values under the header's C names;
* `lookup()`, `parse_args()` and `decode_ioctl()`, which match an ioctl by `_IOC_NR` the way the
  kernel's dispatcher does (K-CHR `kfd_ioctl()`): the size in the request word may be older or
  newer than ours, the kernel zero-extends a smaller user struct and copies back only the user's
  size, so CREATE_QUEUE 0xC0584B02 (88 bytes, <1.17) and 0xC0604B02 (96 bytes) are the same ioctl;
* the /dev/kfd mmap-offset encoding and the BO handle encoding (K-PRIV);
* `POINTER_PAYLOADS`: the user memory an ioctl reads or writes through pointers in its argument
  struct, which a recorder must capture next to the argument bytes.

All structs are little-endian with natural alignment (KFD exists on x86-64 and aarch64 only,
both little-endian LP64), so plain `ctypes.Structure` with fixed-width field types gives exactly
the header's layout. Sources: /work/shared/reference/amd-kfd.md §1 and §8, and the header itself.
"""
from __future__ import annotations

import ctypes
import enum
import functools
from dataclasses import dataclass, field

from ..errors import KfdtraceError


class AbiError(KfdtraceError):
    """Argument bytes or a request number that do not fit the KFD ABI (truncated, unknown, ...)."""


u8, u32, u64, s32 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32

# --------------------------------------------------------------------------------------------
# Linux generic _IOC encoding (include/uapi/asm-generic/ioctl.h; x86-64 and arm64 use it)
# --------------------------------------------------------------------------------------------
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS, _IOC_DIRBITS = 8, 8, 14, 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2
IOC_SIZE_MAX = (1 << _IOC_SIZEBITS) - 1


def _IOC(dir: int, type: int | str, nr: int, size: int) -> int:  # noqa: A002 - header's names
    """Encode an ioctl request word; `type` may be the magic character ('K')."""
    if isinstance(type, str):
        type = ord(type)
    for what, value, bits in (("dir", dir, _IOC_DIRBITS), ("type", type, _IOC_TYPEBITS),
                              ("nr", nr, _IOC_NRBITS), ("size", size, _IOC_SIZEBITS)):
        if not 0 <= value < (1 << bits):
            raise AbiError(f"_IOC: {what}={value} does not fit in {bits} bits")
    return (dir << _IOC_DIRSHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def ioc_nr(req: int) -> int:
    return (req >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def ioc_type(req: int) -> int:
    return (req >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


def ioc_size(req: int) -> int:
    return (req >> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1)


def ioc_dir(req: int) -> int:
    return (req >> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1)


AMDKFD_IOCTL_BASE = ord("K")
KFD_IOCTL_MAJOR_VERSION = 1
KFD_IOCTL_MINOR_VERSION = 22


def AMDKFD_IO(nr: int) -> int:
    return _IOC(IOC_NONE, AMDKFD_IOCTL_BASE, nr, 0)


def AMDKFD_IOR(nr: int, st: type) -> int:
    return _IOC(IOC_READ, AMDKFD_IOCTL_BASE, nr, ctypes.sizeof(st))


def AMDKFD_IOW(nr: int, st: type) -> int:
    return _IOC(IOC_WRITE, AMDKFD_IOCTL_BASE, nr, ctypes.sizeof(st))


def AMDKFD_IOWR(nr: int, st: type) -> int:
    return _IOC(IOC_READ | IOC_WRITE, AMDKFD_IOCTL_BASE, nr, ctypes.sizeof(st))


# --------------------------------------------------------------------------------------------
# Argument structures, in header order. Comments give direction as the header does.
# --------------------------------------------------------------------------------------------
S, U = ctypes.Structure, ctypes.Union


class kfd_ioctl_get_version_args(S):
    _fields_ = [("major_version", u32), ("minor_version", u32)]  # from KFD


class kfd_ioctl_create_queue_args(S):
    """1.22 layout (96 B). write/read_pointer_address are user VAs of the wptr/rptr words (to
    KFD); doorbell_offset and queue_id come back. @88 sdma_engine_id (1.17), @92
    metadata_ring_size (1.22, was `pad`)."""
    _fields_ = [
        ("ring_base_address", u64), ("write_pointer_address", u64),
        ("read_pointer_address", u64), ("doorbell_offset", u64),
        ("ring_size", u32), ("gpu_id", u32), ("queue_type", u32), ("queue_percentage", u32),
        ("queue_priority", u32), ("queue_id", u32),
        ("eop_buffer_address", u64), ("eop_buffer_size", u64), ("ctx_save_restore_address", u64),
        ("ctx_save_restore_size", u32), ("ctl_stack_size", u32),
        ("sdma_engine_id", u32), ("metadata_ring_size", u32),
    ]


class kfd_ioctl_create_queue_args_88(S):
    """Pre-1.17 layout (88 B, cmd 0xC0584B02): no sdma_engine_id / metadata_ring_size."""
    _fields_ = kfd_ioctl_create_queue_args._fields_[:-2]


class kfd_ioctl_destroy_queue_args(S):
    _fields_ = [("queue_id", u32), ("pad", u32)]


class kfd_ioctl_update_queue_args(S):
    _fields_ = [("ring_base_address", u64), ("queue_id", u32), ("ring_size", u32),
                ("queue_percentage", u32), ("queue_priority", u32)]


class kfd_ioctl_set_cu_mask_args(S):
    """num_cu_mask counts bits (multiple of 32); cu_mask_ptr -> num_cu_mask/32 u32 words."""
    _fields_ = [("queue_id", u32), ("num_cu_mask", u32), ("cu_mask_ptr", u64)]


class kfd_ioctl_get_queue_wave_state_args(S):
    _fields_ = [("ctl_stack_address", u64), ("ctl_stack_used_size", u32),
                ("save_area_used_size", u32), ("queue_id", u32), ("pad", u32)]


class kfd_ioctl_get_available_memory_args(S):
    _fields_ = [("available", u64), ("gpu_id", u32), ("pad", u32)]


_DBG_DEVICE_INFO_FIELDS = [
    ("exception_status", u64), ("lds_base", u64), ("lds_limit", u64), ("scratch_base", u64),
    ("scratch_limit", u64), ("gpuvm_base", u64), ("gpuvm_limit", u64),
    ("gpu_id", u32), ("location_id", u32), ("vendor_id", u32), ("device_id", u32),
    ("revision_id", u32), ("subsystem_vendor_id", u32), ("subsystem_device_id", u32),
    ("fw_version", u32), ("gfx_target_version", u32), ("simd_count", u32),
    ("max_waves_per_simd", u32), ("array_count", u32), ("simd_arrays_per_engine", u32),
    ("num_xcc", u32), ("capability", u32), ("debug_prop", u32),
]


class kfd_dbg_device_info_entry(S):
    """Newest layout (128 B): adds capability2@120, pad@124 to the 1.13-1.17 entry."""
    _fields_ = _DBG_DEVICE_INFO_FIELDS + [("capability2", u32), ("pad", u32)]


class kfd_dbg_device_info_entry_120(S):
    """1.13-1.17 layout (120 B)."""
    _fields_ = _DBG_DEVICE_INFO_FIELDS


class kfd_ioctl_set_memory_policy_args(S):
    """@28 misc_process_flag (1.18; `pad` before, KFD_PROC_FLAG_MFMA_HIGH_PRECISION = bit 0)."""
    _fields_ = [("alternate_aperture_base", u64), ("alternate_aperture_size", u64),
                ("gpu_id", u32), ("default_policy", u32), ("alternate_policy", u32),
                ("misc_process_flag", u32)]


class kfd_ioctl_get_clock_counters_args(S):
    _fields_ = [("gpu_clock_counter", u64), ("cpu_clock_counter", u64),
                ("system_clock_counter", u64), ("system_clock_freq", u64),
                ("gpu_id", u32), ("pad", u32)]


class kfd_process_device_apertures(S):
    _fields_ = [("lds_base", u64), ("lds_limit", u64), ("scratch_base", u64),
                ("scratch_limit", u64), ("gpuvm_base", u64), ("gpuvm_limit", u64),
                ("gpu_id", u32), ("pad", u32)]


NUM_OF_SUPPORTED_GPUS = 7


class kfd_ioctl_get_process_apertures_args(S):
    """Deprecated fixed-size variant (7 nodes, 400 B)."""
    _fields_ = [("process_apertures", kfd_process_device_apertures * NUM_OF_SUPPORTED_GPUS),
                ("num_of_nodes", u32), ("pad", u32)]


class kfd_ioctl_get_process_apertures_new_args(S):
    """num_of_nodes=0 asks for the count; then the kernel fills that many entries."""
    _fields_ = [("kfd_process_device_apertures_ptr", u64), ("num_of_nodes", u32), ("pad", u32)]


class kfd_ioctl_dbg_register_args(S):
    _fields_ = [("gpu_id", u32), ("pad", u32)]


class kfd_ioctl_dbg_unregister_args(S):
    _fields_ = [("gpu_id", u32), ("pad", u32)]


class kfd_ioctl_dbg_address_watch_args(S):
    _fields_ = [("content_ptr", u64), ("gpu_id", u32), ("buf_size_in_bytes", u32)]


class kfd_ioctl_dbg_wave_control_args(S):
    _fields_ = [("content_ptr", u64), ("gpu_id", u32), ("buf_size_in_bytes", u32)]


class kfd_ioctl_create_event_args(S):
    """On dGPUs the first call passes a signal-page BO handle *in* event_page_offset."""
    _fields_ = [("event_page_offset", u64), ("event_trigger_data", u32), ("event_type", u32),
                ("auto_reset", u32), ("node_id", u32), ("event_id", u32),
                ("event_slot_index", u32)]


class kfd_ioctl_destroy_event_args(S):
    _fields_ = [("event_id", u32), ("pad", u32)]


class kfd_ioctl_set_event_args(S):
    _fields_ = [("event_id", u32), ("pad", u32)]


class kfd_ioctl_reset_event_args(S):
    _fields_ = [("event_id", u32), ("pad", u32)]


class kfd_memory_exception_failure(S):
    _fields_ = [("NotPresent", u32), ("ReadOnly", u32), ("NoExecute", u32), ("imprecise", u32)]


class kfd_hsa_memory_exception_data(S):
    _fields_ = [("failure", kfd_memory_exception_failure), ("va", u64), ("gpu_id", u32),
                ("ErrorType", u32)]


class kfd_hsa_hw_exception_data(S):
    _fields_ = [("reset_type", u32), ("reset_cause", u32), ("memory_lost", u32), ("gpu_id", u32)]


class kfd_hsa_signal_event_data(S):
    _fields_ = [("last_event_age", u64)]  # to and from KFD (1.14)


class _kfd_event_data_union(U):
    """The anonymous union at the start of kfd_event_data (32 B)."""
    _fields_ = [("memory_exception_data", kfd_hsa_memory_exception_data),
                ("hw_exception_data", kfd_hsa_hw_exception_data),
                ("signal_event_data", kfd_hsa_signal_event_data)]


class kfd_event_data(S):
    """One WAIT_EVENTS array element (48 B); event_id is the input, the union is filled by KFD
    depending on the event's type (which is not in the element itself)."""
    _anonymous_ = ("_u",)
    _fields_ = [("_u", _kfd_event_data_union), ("kfd_event_data_ext", u64), ("event_id", u32),
                ("pad", u32)]


class kfd_ioctl_wait_events_args(S):
    """timeout in ms (0 immediate, 0xFFFFFFFF infinite); events_ptr -> num_events kfd_event_data."""
    _fields_ = [("events_ptr", u64), ("num_events", u32), ("wait_for_all", u32),
                ("timeout", u32), ("wait_result", u32)]


class kfd_ioctl_set_scratch_backing_va_args(S):
    _fields_ = [("va_addr", u64), ("gpu_id", u32), ("pad", u32)]


class kfd_ioctl_get_tile_config_args(S):
    _fields_ = [("tile_config_ptr", u64), ("macro_tile_config_ptr", u64),
                ("num_tile_configs", u32), ("num_macro_tile_configs", u32), ("gpu_id", u32),
                ("gb_addr_config", u32), ("num_banks", u32), ("num_ranks", u32)]


class kfd_ioctl_set_trap_handler_args(S):
    _fields_ = [("tba_addr", u64), ("tma_addr", u64), ("gpu_id", u32), ("pad", u32)]


class kfd_ioctl_acquire_vm_args(S):
    _fields_ = [("drm_fd", u32), ("gpu_id", u32)]


class kfd_ioctl_alloc_memory_of_gpu_args(S):
    """handle = gpu_id<<32 | idr (out). mmap_offset: in = CPU VA for USERPTR, out = render-node
    GEM offset (VRAM/GTT) or a /dev/kfd offset (MMIO_REMAP)."""
    _fields_ = [("va_addr", u64), ("size", u64), ("handle", u64), ("mmap_offset", u64),
                ("gpu_id", u32), ("flags", u32)]


class kfd_ioctl_free_memory_of_gpu_args(S):
    _fields_ = [("handle", u64)]


class kfd_ioctl_map_memory_to_gpu_args(S):
    """device_ids_array_ptr -> n_devices u32 gpu_ids; n_success in/out (resume count)."""
    _fields_ = [("handle", u64), ("device_ids_array_ptr", u64), ("n_devices", u32),
                ("n_success", u32)]


class kfd_ioctl_unmap_memory_from_gpu_args(S):
    _fields_ = [("handle", u64), ("device_ids_array_ptr", u64), ("n_devices", u32),
                ("n_success", u32)]


class kfd_ioctl_alloc_queue_gws_args(S):
    _fields_ = [("queue_id", u32), ("num_gws", u32), ("first_gws", u32), ("pad", u32)]


class kfd_ioctl_get_dmabuf_info_args(S):
    _fields_ = [("size", u64), ("metadata_ptr", u64), ("metadata_size", u32), ("gpu_id", u32),
                ("flags", u32), ("dmabuf_fd", u32)]


class kfd_ioctl_import_dmabuf_args(S):
    _fields_ = [("va_addr", u64), ("handle", u64), ("gpu_id", u32), ("dmabuf_fd", u32)]


class kfd_ioctl_export_dmabuf_args(S):
    _fields_ = [("handle", u64), ("flags", u32), ("dmabuf_fd", u32)]


class kfd_ioctl_smi_events_args(S):
    _fields_ = [("gpuid", u32), ("anon_fd", u32)]


class kfd_ioctl_criu_args(S):
    _fields_ = [("devices", u64), ("bos", u64), ("priv_data", u64), ("priv_data_size", u64),
                ("num_devices", u32), ("num_bos", u32), ("num_objects", u32), ("pid", u32),
                ("op", u32)]


class kfd_criu_device_bucket(S):
    _fields_ = [("user_gpu_id", u32), ("actual_gpu_id", u32), ("drm_fd", u32), ("pad", u32)]


class kfd_criu_bo_bucket(S):
    _fields_ = [("addr", u64), ("size", u64), ("offset", u64), ("restored_offset", u64),
                ("gpu_id", u32), ("alloc_flags", u32), ("dmabuf_fd", u32), ("pad", u32)]


class kfd_ioctl_svm_attribute(S):
    _fields_ = [("type", u32), ("value", u32)]


_SVM_FIXED = [("start_addr", u64), ("size", u64), ("op", u32), ("nattr", u32)]


class kfd_ioctl_svm_args(S):
    """24 B plus a flexible `attrs[]`; libhsakmt issues it with _IOC_SIZE = 24 + 8*nattr.
    `svm_args_class(n)` gives the same layout with n trailing attributes."""
    _fields_ = _SVM_FIXED + [("attrs", kfd_ioctl_svm_attribute * 0)]


class kfd_ioctl_set_xnack_mode_args(S):
    _fields_ = [("xnack_enabled", s32)]  # negative = query


class kfd_runtime_info(S):
    _fields_ = [("r_debug", u64), ("runtime_state", u32), ("ttmp_setup", u32)]


class kfd_ioctl_runtime_enable_args(S):
    _fields_ = [("r_debug", u64), ("mode_mask", u32), ("capabilities_mask", u32)]


class kfd_queue_snapshot_entry(S):
    _fields_ = [("exception_status", u64), ("ring_base_address", u64),
                ("write_pointer_address", u64), ("read_pointer_address", u64),
                ("ctx_save_restore_address", u64), ("queue_id", u32), ("gpu_id", u32),
                ("ring_size", u32), ("queue_type", u32), ("ctx_save_restore_area_size", u32),
                ("reserved", u32)]


class kfd_context_save_area_header_wave_state(S):
    """The header's unnamed `struct { ... } wave_state` inside kfd_context_save_area_header."""
    _fields_ = [("control_stack_offset", u32), ("control_stack_size", u32),
                ("wave_state_offset", u32), ("wave_state_size", u32)]


class kfd_context_save_area_header(S):
    _fields_ = [("wave_state", kfd_context_save_area_header_wave_state), ("debug_offset", u32),
                ("debug_size", u32), ("err_payload_addr", u64), ("err_event_id", u32),
                ("reserved1", u32)]


class kfd_ioctl_dbg_trap_enable_args(S):
    _fields_ = [("exception_mask", u64), ("rinfo_ptr", u64), ("rinfo_size", u32), ("dbg_fd", u32)]


class kfd_ioctl_dbg_trap_send_runtime_event_args(S):
    _fields_ = [("exception_mask", u64), ("gpu_id", u32), ("queue_id", u32)]


class kfd_ioctl_dbg_trap_set_exceptions_enabled_args(S):
    _fields_ = [("exception_mask", u64)]


class kfd_ioctl_dbg_trap_set_wave_launch_override_args(S):
    _fields_ = [("override_mode", u32), ("enable_mask", u32), ("support_request_mask", u32),
                ("pad", u32)]


class kfd_ioctl_dbg_trap_set_wave_launch_mode_args(S):
    _fields_ = [("launch_mode", u32), ("pad", u32)]


class kfd_ioctl_dbg_trap_suspend_queues_args(S):
    _fields_ = [("exception_mask", u64), ("queue_array_ptr", u64), ("num_queues", u32),
                ("grace_period", u32)]


class kfd_ioctl_dbg_trap_resume_queues_args(S):
    _fields_ = [("queue_array_ptr", u64), ("num_queues", u32), ("pad", u32)]


class kfd_ioctl_dbg_trap_set_node_address_watch_args(S):
    _fields_ = [("address", u64), ("mode", u32), ("mask", u32), ("gpu_id", u32), ("id", u32)]


class kfd_ioctl_dbg_trap_clear_node_address_watch_args(S):
    _fields_ = [("gpu_id", u32), ("id", u32)]


class kfd_ioctl_dbg_trap_set_flags_args(S):
    _fields_ = [("flags", u32), ("pad", u32)]


class kfd_ioctl_dbg_trap_query_debug_event_args(S):
    _fields_ = [("exception_mask", u64), ("gpu_id", u32), ("queue_id", u32)]


class kfd_ioctl_dbg_trap_query_exception_info_args(S):
    _fields_ = [("info_ptr", u64), ("info_size", u32), ("source_id", u32),
                ("exception_code", u32), ("clear_exception", u32)]


class kfd_ioctl_dbg_trap_queue_snapshot_args(S):
    _fields_ = [("exception_mask", u64), ("snapshot_buf_ptr", u64), ("num_queues", u32),
                ("entry_size", u32)]


class kfd_ioctl_dbg_trap_device_snapshot_args(S):
    _fields_ = [("exception_mask", u64), ("snapshot_buf_ptr", u64), ("num_devices", u32),
                ("entry_size", u32)]


class _kfd_ioctl_dbg_trap_union(U):
    """The anonymous op-specific union of kfd_ioctl_dbg_trap_args (24 B)."""
    _fields_ = [
        ("enable", kfd_ioctl_dbg_trap_enable_args),
        ("send_runtime_event", kfd_ioctl_dbg_trap_send_runtime_event_args),
        ("set_exceptions_enabled", kfd_ioctl_dbg_trap_set_exceptions_enabled_args),
        ("launch_override", kfd_ioctl_dbg_trap_set_wave_launch_override_args),
        ("launch_mode", kfd_ioctl_dbg_trap_set_wave_launch_mode_args),
        ("suspend_queues", kfd_ioctl_dbg_trap_suspend_queues_args),
        ("resume_queues", kfd_ioctl_dbg_trap_resume_queues_args),
        ("set_node_address_watch", kfd_ioctl_dbg_trap_set_node_address_watch_args),
        ("clear_node_address_watch", kfd_ioctl_dbg_trap_clear_node_address_watch_args),
        ("set_flags", kfd_ioctl_dbg_trap_set_flags_args),
        ("query_debug_event", kfd_ioctl_dbg_trap_query_debug_event_args),
        ("query_exception_info", kfd_ioctl_dbg_trap_query_exception_info_args),
        ("queue_snapshot", kfd_ioctl_dbg_trap_queue_snapshot_args),
        ("device_snapshot", kfd_ioctl_dbg_trap_device_snapshot_args),
    ]


class kfd_ioctl_dbg_trap_args(S):
    _anonymous_ = ("_u",)
    _fields_ = [("pid", u32), ("op", u32), ("_u", _kfd_ioctl_dbg_trap_union)]


class kfd_pc_sample_info(S):
    _fields_ = [("interval", u64), ("interval_min", u64), ("interval_max", u64), ("flags", u64),
                ("method", u32), ("type", u32)]


class kfd_ioctl_pc_sample_args(S):
    _fields_ = [("sample_info_ptr", u64), ("num_sample_info", u32), ("op", u32), ("gpu_id", u32),
                ("trace_id", u32), ("flags", u32), ("version", u32)]


# ---- DKMS / ROCm-only (ROCR-Runtime libhsakmt kfd_ioctl.h; tinygrad's autogen of it) ----------
class kfd_ioctl_ipc_export_handle_args(S):
    _fields_ = [("handle", u64), ("share_handle", u32 * 4), ("gpu_id", u32), ("flags", u32)]


class kfd_ioctl_ipc_import_handle_args(S):
    _fields_ = [("handle", u64), ("va_addr", u64), ("mmap_offset", u64),
                ("share_handle", u32 * 4), ("gpu_id", u32), ("flags", u32)]


class kfd_memory_range(S):
    _fields_ = [("va_addr", u64), ("size", u64)]


class kfd_ioctl_cross_memory_copy_deprecated_args(S):
    """Called kfd_ioctl_cross_memory_copy_args in older ROCm headers (same layout)."""
    _fields_ = [("pid", u32), ("flags", u32), ("src_mem_range_array", u64),
                ("src_mem_array_size", u64), ("dst_mem_range_array", u64),
                ("dst_mem_array_size", u64), ("bytes_copied", u64)]


kfd_ioctl_cross_memory_copy_args = kfd_ioctl_cross_memory_copy_deprecated_args


class kfd_ioctl_dbg_trap_args_deprecated(S):
    """The pre-1.13 DKMS debugger ioctl (0x82)."""
    _fields_ = [("exception_mask", u64), ("ptr", u64), ("pid", u32), ("op", u32), ("data1", u32),
                ("data2", u32), ("data3", u32), ("data4", u32)]


class kfd_ioctl_spm_args(S):
    _fields_ = [("dest_buf", u64), ("buf_size", u32), ("op", u32), ("timeout", u32),
                ("gpu_id", u32), ("bytes_copied", u32), ("has_data_loss", u32)]


class kfd_ioctl_pmc_settings(S):
    _fields_ = [("gpu_id", u32), ("lock", u32), ("perfcount_enable", u32)]


class _kfd_ioctl_profiler_union(U):
    _fields_ = [("pc_sample", kfd_ioctl_pc_sample_args), ("pmc", kfd_ioctl_pmc_settings),
                ("version", u32)]


class kfd_ioctl_profiler_args(S):
    _anonymous_ = ("_u",)
    _fields_ = [("op", u32), ("_u", _kfd_ioctl_profiler_union)]


class _kfd_no_args(S):
    """Stand-in for ioctls without an argument struct (CREATE_PROCESS, `_IO('K', 0x27)`)."""
    _fields_ = []


#: Every header struct by its C name (newest layout).
STRUCTS: dict[str, type] = {
    n: c for n, c in list(globals().items())
    if n.startswith("kfd_") and isinstance(c, type) and issubclass(c, (S, U))
    and not n.endswith(("_88", "_120")) and n == c.__name__
}
#: C name -> {size: class} for structs that grew (older header versions).
STRUCT_REVISIONS: dict[str, dict[int, type]] = {n: {ctypes.sizeof(c): c} for n, c in STRUCTS.items()}
STRUCT_REVISIONS["kfd_ioctl_create_queue_args"][88] = kfd_ioctl_create_queue_args_88
STRUCT_REVISIONS["kfd_dbg_device_info_entry"][120] = kfd_dbg_device_info_entry_120
STRUCT_REVISIONS["kfd_ioctl_cross_memory_copy_args"] = {48: kfd_ioctl_cross_memory_copy_args}
#: Fields renamed between header versions: (struct, old name) -> current name.
RENAMED_FIELDS: dict[tuple[str, str], str] = {
    ("kfd_ioctl_set_memory_policy_args", "pad"): "misc_process_flag",  # 1.18
    ("kfd_ioctl_create_queue_args", "pad"): "metadata_ring_size",  # 1.22 (pad came with 1.17)
}


@functools.lru_cache(maxsize=64)
def svm_args_class(nattr: int) -> type:
    """kfd_ioctl_svm_args with `nattr` trailing attributes (size 24 + 8*nattr)."""
    if nattr == 0:
        return kfd_ioctl_svm_args
    if not 0 < nattr <= (IOC_SIZE_MAX - 24) // 8:
        raise AbiError(f"SVM: {nattr} attributes do not fit in an ioctl argument")
    return type("kfd_ioctl_svm_args", (S,), {
        "_fields_": _SVM_FIXED + [("attrs", kfd_ioctl_svm_attribute * nattr)],
        "__doc__": f"kfd_ioctl_svm_args with {nattr} attributes", "__module__": __name__})


# --------------------------------------------------------------------------------------------
# Request numbers (newest struct sizes), as the header defines them
# --------------------------------------------------------------------------------------------
AMDKFD_IOC_GET_VERSION = AMDKFD_IOR(0x01, kfd_ioctl_get_version_args)
AMDKFD_IOC_CREATE_QUEUE = AMDKFD_IOWR(0x02, kfd_ioctl_create_queue_args)
AMDKFD_IOC_DESTROY_QUEUE = AMDKFD_IOWR(0x03, kfd_ioctl_destroy_queue_args)
AMDKFD_IOC_SET_MEMORY_POLICY = AMDKFD_IOW(0x04, kfd_ioctl_set_memory_policy_args)
AMDKFD_IOC_GET_CLOCK_COUNTERS = AMDKFD_IOWR(0x05, kfd_ioctl_get_clock_counters_args)
AMDKFD_IOC_GET_PROCESS_APERTURES = AMDKFD_IOR(0x06, kfd_ioctl_get_process_apertures_args)
AMDKFD_IOC_UPDATE_QUEUE = AMDKFD_IOW(0x07, kfd_ioctl_update_queue_args)
AMDKFD_IOC_CREATE_EVENT = AMDKFD_IOWR(0x08, kfd_ioctl_create_event_args)
AMDKFD_IOC_DESTROY_EVENT = AMDKFD_IOW(0x09, kfd_ioctl_destroy_event_args)
AMDKFD_IOC_SET_EVENT = AMDKFD_IOW(0x0A, kfd_ioctl_set_event_args)
AMDKFD_IOC_RESET_EVENT = AMDKFD_IOW(0x0B, kfd_ioctl_reset_event_args)
AMDKFD_IOC_WAIT_EVENTS = AMDKFD_IOWR(0x0C, kfd_ioctl_wait_events_args)
AMDKFD_IOC_DBG_REGISTER_DEPRECATED = AMDKFD_IOW(0x0D, kfd_ioctl_dbg_register_args)
AMDKFD_IOC_DBG_UNREGISTER_DEPRECATED = AMDKFD_IOW(0x0E, kfd_ioctl_dbg_unregister_args)
AMDKFD_IOC_DBG_ADDRESS_WATCH_DEPRECATED = AMDKFD_IOW(0x0F, kfd_ioctl_dbg_address_watch_args)
AMDKFD_IOC_DBG_WAVE_CONTROL_DEPRECATED = AMDKFD_IOW(0x10, kfd_ioctl_dbg_wave_control_args)
AMDKFD_IOC_SET_SCRATCH_BACKING_VA = AMDKFD_IOWR(0x11, kfd_ioctl_set_scratch_backing_va_args)
AMDKFD_IOC_GET_TILE_CONFIG = AMDKFD_IOWR(0x12, kfd_ioctl_get_tile_config_args)
AMDKFD_IOC_SET_TRAP_HANDLER = AMDKFD_IOW(0x13, kfd_ioctl_set_trap_handler_args)
AMDKFD_IOC_GET_PROCESS_APERTURES_NEW = AMDKFD_IOWR(0x14, kfd_ioctl_get_process_apertures_new_args)
AMDKFD_IOC_ACQUIRE_VM = AMDKFD_IOW(0x15, kfd_ioctl_acquire_vm_args)
AMDKFD_IOC_ALLOC_MEMORY_OF_GPU = AMDKFD_IOWR(0x16, kfd_ioctl_alloc_memory_of_gpu_args)
AMDKFD_IOC_FREE_MEMORY_OF_GPU = AMDKFD_IOW(0x17, kfd_ioctl_free_memory_of_gpu_args)
AMDKFD_IOC_MAP_MEMORY_TO_GPU = AMDKFD_IOWR(0x18, kfd_ioctl_map_memory_to_gpu_args)
AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU = AMDKFD_IOWR(0x19, kfd_ioctl_unmap_memory_from_gpu_args)
AMDKFD_IOC_SET_CU_MASK = AMDKFD_IOW(0x1A, kfd_ioctl_set_cu_mask_args)
AMDKFD_IOC_GET_QUEUE_WAVE_STATE = AMDKFD_IOWR(0x1B, kfd_ioctl_get_queue_wave_state_args)
AMDKFD_IOC_GET_DMABUF_INFO = AMDKFD_IOWR(0x1C, kfd_ioctl_get_dmabuf_info_args)
AMDKFD_IOC_IMPORT_DMABUF = AMDKFD_IOWR(0x1D, kfd_ioctl_import_dmabuf_args)
AMDKFD_IOC_ALLOC_QUEUE_GWS = AMDKFD_IOWR(0x1E, kfd_ioctl_alloc_queue_gws_args)
AMDKFD_IOC_SMI_EVENTS = AMDKFD_IOWR(0x1F, kfd_ioctl_smi_events_args)
AMDKFD_IOC_SVM = AMDKFD_IOWR(0x20, kfd_ioctl_svm_args)
AMDKFD_IOC_SET_XNACK_MODE = AMDKFD_IOWR(0x21, kfd_ioctl_set_xnack_mode_args)
AMDKFD_IOC_CRIU_OP = AMDKFD_IOWR(0x22, kfd_ioctl_criu_args)
AMDKFD_IOC_AVAILABLE_MEMORY = AMDKFD_IOWR(0x23, kfd_ioctl_get_available_memory_args)
AMDKFD_IOC_EXPORT_DMABUF = AMDKFD_IOWR(0x24, kfd_ioctl_export_dmabuf_args)
AMDKFD_IOC_RUNTIME_ENABLE = AMDKFD_IOWR(0x25, kfd_ioctl_runtime_enable_args)
AMDKFD_IOC_DBG_TRAP = AMDKFD_IOWR(0x26, kfd_ioctl_dbg_trap_args)
AMDKFD_IOC_CREATE_PROCESS = AMDKFD_IO(0x27)  # 1.19
# DKMS / ROCm-only range
AMDKFD_IOC_IPC_IMPORT_HANDLE = AMDKFD_IOWR(0x80, kfd_ioctl_ipc_import_handle_args)
AMDKFD_IOC_IPC_EXPORT_HANDLE = AMDKFD_IOWR(0x81, kfd_ioctl_ipc_export_handle_args)
AMDKFD_IOC_DBG_TRAP_DEPRECATED = AMDKFD_IOWR(0x82, kfd_ioctl_dbg_trap_args_deprecated)
AMDKFD_IOC_CROSS_MEMORY_COPY_DEPRECATED = AMDKFD_IOWR(0x83, kfd_ioctl_cross_memory_copy_deprecated_args)
AMDKFD_IOC_RLC_SPM = AMDKFD_IOWR(0x84, kfd_ioctl_spm_args)
AMDKFD_IOC_PC_SAMPLE = AMDKFD_IOWR(0x85, kfd_ioctl_pc_sample_args)
AMDKFD_IOC_PROFILER = AMDKFD_IOWR(0x86, kfd_ioctl_profiler_args)  # ROCm 7 DKMS

AMDKFD_COMMAND_START, AMDKFD_COMMAND_END = 0x01, 0x28
AMDKFD_COMMAND_START_2, AMDKFD_COMMAND_END_2 = 0x80, 0x88


@dataclass(frozen=True)
class IoctlDef:
    """One ioctl: its number, short name ("CREATE_QUEUE"), direction, newest argument struct
    and size, newest request word, and every struct size the kernel accepts under that nr."""
    nr: int
    name: str
    dir: int
    struct: type | None
    size: int
    request: int
    revisions: dict[int, type] = field(default_factory=dict, hash=False, compare=False)
    dkms: bool = False  # ROCm out-of-tree driver only (0x80-0x86)


def _build_table() -> dict[int, IoctlDef]:
    older = {0x02: [kfd_ioctl_create_queue_args_88]}
    table: dict[int, IoctlDef] = {}
    for const, value in list(globals().items()):
        if not const.startswith("AMDKFD_IOC_") or not isinstance(value, int):
            continue
        nr, size = ioc_nr(value), ioc_size(value)
        st = _STRUCT_OF.get(nr)
        assert (ctypes.sizeof(st) if st else 0) == size, const
        revs = {ctypes.sizeof(c): c for c in [st, *older.get(nr, [])] if c is not None}
        table[nr] = IoctlDef(nr, const[len("AMDKFD_IOC_"):], ioc_dir(value), st, size, value,
                             revs, dkms=nr >= AMDKFD_COMMAND_START_2)
    return dict(sorted(table.items()))


_STRUCT_OF = {  # nr -> argument struct, exactly as the AMDKFD_IOC_* definitions above
    0x01: kfd_ioctl_get_version_args, 0x02: kfd_ioctl_create_queue_args,
    0x03: kfd_ioctl_destroy_queue_args, 0x04: kfd_ioctl_set_memory_policy_args,
    0x05: kfd_ioctl_get_clock_counters_args, 0x06: kfd_ioctl_get_process_apertures_args,
    0x07: kfd_ioctl_update_queue_args, 0x08: kfd_ioctl_create_event_args,
    0x09: kfd_ioctl_destroy_event_args, 0x0A: kfd_ioctl_set_event_args,
    0x0B: kfd_ioctl_reset_event_args, 0x0C: kfd_ioctl_wait_events_args,
    0x0D: kfd_ioctl_dbg_register_args, 0x0E: kfd_ioctl_dbg_unregister_args,
    0x0F: kfd_ioctl_dbg_address_watch_args, 0x10: kfd_ioctl_dbg_wave_control_args,
    0x11: kfd_ioctl_set_scratch_backing_va_args, 0x12: kfd_ioctl_get_tile_config_args,
    0x13: kfd_ioctl_set_trap_handler_args, 0x14: kfd_ioctl_get_process_apertures_new_args,
    0x15: kfd_ioctl_acquire_vm_args, 0x16: kfd_ioctl_alloc_memory_of_gpu_args,
    0x17: kfd_ioctl_free_memory_of_gpu_args, 0x18: kfd_ioctl_map_memory_to_gpu_args,
    0x19: kfd_ioctl_unmap_memory_from_gpu_args, 0x1A: kfd_ioctl_set_cu_mask_args,
    0x1B: kfd_ioctl_get_queue_wave_state_args, 0x1C: kfd_ioctl_get_dmabuf_info_args,
    0x1D: kfd_ioctl_import_dmabuf_args, 0x1E: kfd_ioctl_alloc_queue_gws_args,
    0x1F: kfd_ioctl_smi_events_args, 0x20: kfd_ioctl_svm_args,
    0x21: kfd_ioctl_set_xnack_mode_args, 0x22: kfd_ioctl_criu_args,
    0x23: kfd_ioctl_get_available_memory_args, 0x24: kfd_ioctl_export_dmabuf_args,
    0x25: kfd_ioctl_runtime_enable_args, 0x26: kfd_ioctl_dbg_trap_args,
    0x80: kfd_ioctl_ipc_import_handle_args, 0x81: kfd_ioctl_ipc_export_handle_args,
    0x82: kfd_ioctl_dbg_trap_args_deprecated, 0x83: kfd_ioctl_cross_memory_copy_deprecated_args,
    0x84: kfd_ioctl_spm_args, 0x85: kfd_ioctl_pc_sample_args, 0x86: kfd_ioctl_profiler_args,
}

IOCTLS: dict[int, IoctlDef] = _build_table()
IOCTLS_BY_NAME: dict[str, IoctlDef] = {d.name: d for d in IOCTLS.values()}
#: Other spellings found in older headers -> canonical name.
IOCTL_ALIASES = {"CROSS_MEMORY_COPY": "CROSS_MEMORY_COPY_DEPRECATED",
                 "DBG_TRAP_OLD": "DBG_TRAP_DEPRECATED"}
_SVM_NR = 0x20


def lookup(request: int) -> IoctlDef | None:
    """The ioctl the kernel would run for `request`: matched by `_IOC_NR` only (type must be
    'K'); direction and size bits of the request are not looked at, as in K-CHR."""
    if ioc_type(request) != AMDKFD_IOCTL_BASE:
        return None
    return IOCTLS.get(ioc_nr(request))


def ioctl_name(request: int) -> str:
    d = lookup(request)
    return d.name if d else f"UNKNOWN_0x{request:08X}"


def request_for(name: str, size: int | None = None) -> int:
    """Request word for ioctl `name` ("CREATE_QUEUE" or "AMDKFD_IOC_CREATE_QUEUE"), with the
    newest struct size or the given one (the kernel accepts any size; e.g. 88 for a pre-1.17
    CREATE_QUEUE, or 24 + 8*nattr for SVM)."""
    short = name.removeprefix("AMDKFD_IOC_")
    d = IOCTLS_BY_NAME.get(IOCTL_ALIASES.get(short, short))
    if d is None:
        raise AbiError(f"no KFD ioctl named {name!r}")
    if size is None:
        return d.request
    return _IOC(d.dir, AMDKFD_IOCTL_BASE, d.nr, size)


def struct_for_size(d: IoctlDef, size: int, *, kernel_view: bool = False) -> type:
    """The struct class to read `size` user bytes of ioctl `d` with: the revision of exactly
    that size if there is one (SVM: one with (size-24)//8 attributes), else the newest layout.
    With kernel_view, always the layout the running (newest) kernel uses."""
    if d.struct is None:
        return _kfd_no_args
    if d.nr == _SVM_NR:
        return svm_args_class(max(0, size - 24) // 8)
    if not kernel_view and size in d.revisions:
        return d.revisions[size]
    return d.struct


def _require(request: int, data: bytes | bytearray | memoryview) -> tuple[IoctlDef, int, bytes]:
    if isinstance(request, bool) or not isinstance(request, int) or not 0 <= request < 1 << 32:
        raise AbiError(f"ioctl request {request!r} is not a 32-bit request word")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AbiError(f"{ioctl_name(request)}: argument bytes expected, got {type(data).__name__}")
    d = lookup(request)
    if d is None:
        raise AbiError(f"request 0x{request:08X} is not a known KFD ioctl "
                       f"(type {ioc_type(request):#04x}, nr {ioc_nr(request):#04x})")
    usize, raw = ioc_size(request), bytes(data)
    if len(raw) < usize:
        raise AbiError(f"{d.name}: argument is {len(raw)} bytes but request 0x{request:08X} "
                       f"says {usize} bytes (truncated)")
    return d, usize, raw[:usize]


def parse_args(request: int, data: bytes | bytearray | memoryview, *,
               kernel_view: bool = False) -> ctypes.Structure:
    """Argument bytes of `request` as a ctypes struct, with the kernel's size rules.

    Only `_IOC_SIZE(request)` bytes count (the kernel copies no more). By default they are read
    with the struct revision of that size (88-byte CREATE_QUEUE -> kfd_ioctl_create_queue_args_88);
    sizes without a revision are zero-extended into / truncated to the newest layout.
    kernel_view=True gives exactly what a newest kernel's handler sees: always the newest
    layout, zero-extended, and all zero for read-only (IOR) ioctls, whose input the kernel never
    copies in. Raises AbiError for unknown requests and for fewer bytes than the request says.
    """
    d, usize, raw = _require(request, data)
    cls = struct_for_size(d, usize, kernel_view=kernel_view)
    n = ctypes.sizeof(cls)
    if kernel_view and not d.dir & IOC_WRITE:
        raw = b""
    return cls.from_buffer_copy(raw[:n].ljust(n, b"\0"))


def pack_args(request: int, s: ctypes.Structure | ctypes.Union, original: bytes = b"") -> bytes:
    """What the kernel copies back for `request`: exactly `_IOC_SIZE(request)` bytes, the struct's
    bytes first; past the struct, `original` (the user's input, which the kernel copied in and
    leaves untouched) or zeros."""
    usize = ioc_size(request)
    out = bytearray(bytes(original[:usize]).ljust(usize, b"\0"))
    body = bytes(s)[:usize]
    out[:len(body)] = body
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Generic struct helpers
# --------------------------------------------------------------------------------------------
def _field_names(cls: type) -> list[str]:
    return [f[0] for f in cls._fields_]


def struct_to_dict(s: ctypes.Structure | ctypes.Union) -> dict:
    """Fields of a ctypes struct/union as plain Python: ints, nested dicts for sub-structs and
    unions (every union member), lists for arrays. Anonymous members are flattened into the
    parent, as C makes their fields the parent's."""
    out: dict = {}
    anon = getattr(type(s), "_anonymous_", ())
    for name in _field_names(type(s)):
        value = getattr(s, name)
        if name in anon:
            out.update(struct_to_dict(value))
        else:
            out[name] = _plain(value)
    return out


def _plain(v):
    if isinstance(v, (ctypes.Structure, ctypes.Union)):
        return struct_to_dict(v)
    if isinstance(v, ctypes.Array):
        return [_plain(x) for x in v]
    return v


def struct_layout(cls: type, _prefix: str = "", _base: int = 0) -> dict[str, tuple[int, int]]:
    """Flattened layout: "path" -> (byte offset, byte size) for every member, sub-struct members
    as dotted paths ("wave_state.control_stack_offset"), anonymous members flattened. Used to
    compare against offsetof/sizeof from a C compiler."""
    out: dict[str, tuple[int, int]] = {}
    anon = getattr(cls, "_anonymous_", ())
    for name, ctype in ((f[0], f[1]) for f in cls._fields_):
        off = _base + getattr(cls, name).offset
        if name in anon:
            out.update(struct_layout(ctype, _prefix, off))
            continue
        path = _prefix + name
        out[path] = (off, ctypes.sizeof(ctype))
        if isinstance(ctype, type) and issubclass(ctype, (S, U)):
            out.update(struct_layout(ctype, path + ".", off))
    return out


# --------------------------------------------------------------------------------------------
# Flags and enums (values from the header; names without the C prefix)
# --------------------------------------------------------------------------------------------
class QueueType(enum.IntEnum):
    COMPUTE = 0x0  # PM4
    SDMA = 0x1
    COMPUTE_AQL = 0x2
    SDMA_XGMI = 0x3
    SDMA_BY_ENG_ID = 0x4  # 1.17, uses sdma_engine_id


KFD_MAX_QUEUE_PERCENTAGE = 100
KFD_MAX_QUEUE_PRIORITY = 15
KFD_MIN_QUEUE_RING_SIZE = 1024


class CachePolicy(enum.IntEnum):
    COHERENT = 0
    NONCOHERENT = 1


KFD_PROC_FLAG_MFMA_HIGH_PRECISION = 1 << 0
MAX_ALLOWED_NUM_POINTS = 100
MAX_ALLOWED_AW_BUFF_SIZE = 4096
MAX_ALLOWED_WAC_BUFF_SIZE = 128
KFD_INVALID_FD = 0xFFFFFFFF


class EventType(enum.IntEnum):
    """KFD_IOC_EVENT_* (matches HSA_EVENTTYPE)."""
    SIGNAL = 0
    NODECHANGE = 1
    DEVICESTATECHANGE = 2
    HW_EXCEPTION = 3
    SYSTEM_EVENT = 4
    DEBUG_EVENT = 5
    PROFILE_EVENT = 6
    QUEUE_EVENT = 7
    MEMORY = 8


class WaitResult(enum.IntEnum):
    COMPLETE = 0
    TIMEOUT = 1
    FAIL = 2


KFD_SIGNAL_EVENT_LIMIT = 4096
# kernel-private event constants (K-EV): wait timeouts in ms, first non-signal event id, slot value
KFD_EVENT_TIMEOUT_IMMEDIATE = 0
KFD_EVENT_TIMEOUT_INFINITE = 0xFFFFFFFF
KFD_FIRST_NONSIGNAL_EVENT_ID = 0x40000000  # (INT_MAX >> 1) + 1
UNSIGNALED_EVENT_SLOT = 0xFFFFFFFFFFFFFFFF


class HwExceptionResetType(enum.IntEnum):
    WHOLE_GPU_RESET = 0
    PER_ENGINE_RESET = 1


class HwExceptionResetCause(enum.IntEnum):
    GPU_HANG = 0
    ECC = 1


class MemErrorType(enum.IntEnum):
    """kfd_hsa_memory_exception_data.ErrorType."""
    NO_RAS = 0
    SRAM_ECC = 1
    POISON_CONSUMED = 2
    GPU_HANG = 3


class AllocFlags(enum.IntFlag):
    """KFD_IOC_ALLOC_MEM_FLAGS_*: memory type (bits 0-4) and attributes (bits 23-31)."""
    VRAM = 1 << 0
    GTT = 1 << 1
    USERPTR = 1 << 2
    DOORBELL = 1 << 3
    MMIO_REMAP = 1 << 4
    CONTIGUOUS = 1 << 23  # 1.16
    EXT_COHERENT = 1 << 24
    UNCACHED = 1 << 25
    COHERENT = 1 << 26
    AQL_QUEUE_MEM = 1 << 27
    NO_SUBSTITUTE = 1 << 28
    PUBLIC = 1 << 29
    EXECUTABLE = 1 << 30
    WRITABLE = 1 << 31


class SmiEvent(enum.IntEnum):
    NONE = 0
    VMFAULT = 1
    THERMAL_THROTTLE = 2
    GPU_PRE_RESET = 3
    GPU_POST_RESET = 4
    MIGRATE_START = 5
    MIGRATE_END = 6
    PAGE_FAULT_START = 7
    PAGE_FAULT_END = 8
    QUEUE_EVICTION = 9
    QUEUE_RESTORE = 10
    UNMAP_FROM_GPU = 11
    PROCESS_START = 12
    PROCESS_END = 13
    ALL_PROCESS = 64


def KFD_SMI_EVENT_MASK_FROM_INDEX(i: int) -> int:
    return 1 << (i - 1)


KFD_SMI_EVENT_MSG_SIZE = 96


class MigrateTrigger(enum.IntEnum):
    PREFETCH = 0
    PAGEFAULT_GPU = 1
    PAGEFAULT_CPU = 2
    TTM_EVICTION = 3


class QueueEvictionTrigger(enum.IntEnum):
    """KFD_QUEUE_EVICTION_* (the header mixes TRIGGER_ and CRIU_ names)."""
    TRIGGER_SVM = 0
    TRIGGER_USERPTR = 1
    TRIGGER_TTM = 2
    TRIGGER_SUSPEND = 3
    CRIU_CHECKPOINT = 4
    CRIU_RESTORE = 5


class SvmUnmapTrigger(enum.IntEnum):
    MMU_NOTIFY = 0
    MMU_NOTIFY_MIGRATE = 1
    UNMAP_FROM_CPU = 2


class CriuOp(enum.IntEnum):
    PROCESS_INFO = 0
    CHECKPOINT = 1
    UNPAUSE = 2
    RESTORE = 3
    RESUME = 4


class MmioRemap(enum.IntEnum):
    """Byte offsets of registers inside the MMIO-remap page."""
    HDP_MEM_FLUSH_CNTL = 0
    HDP_REG_FLUSH_CNTL = 4


class SvmFlags(enum.IntFlag):
    HOST_ACCESS = 0x01
    COHERENT = 0x02
    HIVE_LOCAL = 0x04
    GPU_RO = 0x08
    GPU_EXEC = 0x10
    GPU_READ_MOSTLY = 0x20
    GPU_ALWAYS_MAPPED = 0x40
    EXT_COHERENT = 0x80


class SvmOp(enum.IntEnum):
    SET_ATTR = 0
    GET_ATTR = 1


class SvmLocation(enum.IntEnum):
    """PREFERRED/PREFETCH_LOC values other than a gpu_id."""
    SYSMEM = 0
    UNDEFINED = 0xFFFFFFFF


class SvmAttrType(enum.IntEnum):
    PREFERRED_LOC = 0
    PREFETCH_LOC = 1
    ACCESS = 2
    ACCESS_IN_PLACE = 3
    NO_ACCESS = 4
    SET_FLAGS = 5
    CLR_FLAGS = 6
    GRANULARITY = 7  # log2 pages


class DbgTrapOverrideMode(enum.IntEnum):
    OR = 0
    REPLACE = 1


class DbgTrapMask(enum.IntFlag):
    FP_INVALID = 1
    FP_INPUT_DENORMAL = 2
    FP_DIVIDE_BY_ZERO = 4
    FP_OVERFLOW = 8
    FP_UNDERFLOW = 16
    FP_INEXACT = 32
    INT_DIVIDE_BY_ZERO = 64
    DBG_ADDRESS_WATCH = 128
    DBG_MEMORY_VIOLATION = 256
    TRAP_ON_WAVE_START = 1 << 30
    TRAP_ON_WAVE_END = 1 << 31


class DbgTrapWaveLaunchMode(enum.IntEnum):
    NORMAL = 0
    HALT = 1
    DEBUG = 3


class DbgTrapAddressWatchMode(enum.IntEnum):
    READ = 0
    NONREAD = 1
    ATOMIC = 2
    ALL = 3


class DbgTrapFlags(enum.IntFlag):
    SINGLE_MEM_OP = 1
    SINGLE_ALU_OP = 2
    LDS_OUT_OF_ADDR_RANGE = 4  # 1.21


class ExceptionCode(enum.IntEnum):
    """enum kfd_dbg_trap_exception_code (EC_*)."""
    NONE = 0
    QUEUE_WAVE_ABORT = 1
    QUEUE_WAVE_TRAP = 2
    QUEUE_WAVE_MATH_ERROR = 3
    QUEUE_WAVE_ILLEGAL_INSTRUCTION = 4
    QUEUE_WAVE_MEMORY_VIOLATION = 5
    QUEUE_WAVE_APERTURE_VIOLATION = 6
    QUEUE_PACKET_DISPATCH_DIM_INVALID = 16
    QUEUE_PACKET_DISPATCH_GROUP_SEGMENT_SIZE_INVALID = 17
    QUEUE_PACKET_DISPATCH_CODE_INVALID = 18
    QUEUE_PACKET_RESERVED = 19
    QUEUE_PACKET_UNSUPPORTED = 20
    QUEUE_PACKET_DISPATCH_WORK_GROUP_SIZE_INVALID = 21
    QUEUE_PACKET_DISPATCH_REGISTER_INVALID = 22
    QUEUE_PACKET_VENDOR_UNSUPPORTED = 23
    QUEUE_PREEMPTION_ERROR = 30
    QUEUE_NEW = 31
    DEVICE_QUEUE_DELETE = 32
    DEVICE_MEMORY_VIOLATION = 33
    DEVICE_RAS_ERROR = 34
    DEVICE_FATAL_HALT = 35
    DEVICE_NEW = 36
    PROCESS_RUNTIME = 48
    PROCESS_DEVICE_REMOVE = 49
    MAX = 50


def KFD_EC_MASK(ecode: int) -> int:
    return 1 << (ecode - 1)


def _ec_mask(*names: str) -> int:
    return functools.reduce(lambda m, n: m | KFD_EC_MASK(ExceptionCode[n]), names, 0)


_PACKET_ECS = ("QUEUE_PACKET_DISPATCH_DIM_INVALID", "QUEUE_PACKET_DISPATCH_GROUP_SEGMENT_SIZE_INVALID",
               "QUEUE_PACKET_DISPATCH_CODE_INVALID", "QUEUE_PACKET_RESERVED",
               "QUEUE_PACKET_UNSUPPORTED", "QUEUE_PACKET_DISPATCH_WORK_GROUP_SIZE_INVALID",
               "QUEUE_PACKET_DISPATCH_REGISTER_INVALID", "QUEUE_PACKET_VENDOR_UNSUPPORTED")
KFD_EC_MASK_QUEUE = _ec_mask("QUEUE_WAVE_ABORT", "QUEUE_WAVE_TRAP", "QUEUE_WAVE_MATH_ERROR",
                             "QUEUE_WAVE_ILLEGAL_INSTRUCTION", "QUEUE_WAVE_MEMORY_VIOLATION",
                             "QUEUE_WAVE_APERTURE_VIOLATION", *_PACKET_ECS,
                             "QUEUE_PREEMPTION_ERROR", "QUEUE_NEW")
KFD_EC_MASK_DEVICE = _ec_mask("DEVICE_QUEUE_DELETE", "DEVICE_RAS_ERROR", "DEVICE_FATAL_HALT",
                              "DEVICE_MEMORY_VIOLATION", "DEVICE_NEW")
KFD_EC_MASK_PROCESS = _ec_mask("PROCESS_RUNTIME", "PROCESS_DEVICE_REMOVE")
KFD_EC_MASK_PACKET = _ec_mask(*_PACKET_ECS)


def exception_mask_names(mask: int) -> list[str]:
    """EC_* names of the bits set in a 64-bit exception mask (bit ec-1 for code ec)."""
    codes = (i + 1 for i in range(64) if mask >> i & 1)
    return [f"EC_{ExceptionCode(ec).name}" if ec in ExceptionCode._value2member_map_ else f"EC_{ec}"
            for ec in codes]


class DbgRuntimeState(enum.IntEnum):
    DISABLED = 0
    ENABLED = 1
    ENABLED_BUSY = 2
    ENABLED_ERROR = 3


class RuntimeEnableMode(enum.IntFlag):
    ENABLE = 1
    TTMP_SAVE = 2


KFD_DBG_QUEUE_ERROR_BIT = 30
KFD_DBG_QUEUE_INVALID_BIT = 31
KFD_DBG_QUEUE_ERROR_MASK = 1 << KFD_DBG_QUEUE_ERROR_BIT
KFD_DBG_QUEUE_INVALID_MASK = 1 << KFD_DBG_QUEUE_INVALID_BIT


class DbgTrapOp(enum.IntEnum):
    ENABLE = 0
    DISABLE = 1
    SEND_RUNTIME_EVENT = 2
    SET_EXCEPTIONS_ENABLED = 3
    SET_WAVE_LAUNCH_OVERRIDE = 4
    SET_WAVE_LAUNCH_MODE = 5
    SUSPEND_QUEUES = 6
    RESUME_QUEUES = 7
    SET_NODE_ADDRESS_WATCH = 8
    CLEAR_NODE_ADDRESS_WATCH = 9
    SET_FLAGS = 10
    QUERY_DEBUG_EVENT = 11
    QUERY_EXCEPTION_INFO = 12
    GET_QUEUE_SNAPSHOT = 13
    GET_DEVICE_SNAPSHOT = 14


#: DBG_TRAP op -> the union member its handler reads (DISABLE reads none).
DBG_TRAP_OP_MEMBER: dict[int, str | None] = {
    0: "enable", 1: None, 2: "send_runtime_event", 3: "set_exceptions_enabled",
    4: "launch_override", 5: "launch_mode", 6: "suspend_queues", 7: "resume_queues",
    8: "set_node_address_watch", 9: "clear_node_address_watch", 10: "set_flags",
    11: "query_debug_event", 12: "query_exception_info", 13: "queue_snapshot",
    14: "device_snapshot",
}


class PcSampleOp(enum.IntEnum):
    QUERY_CAPABILITIES = 0
    CREATE = 1
    DESTROY = 2
    START = 3
    STOP = 4


class PcSampleMethod(enum.IntEnum):
    HOSTTRAP = 1
    STOCHASTIC = 2


class PcSampleType(enum.IntEnum):
    TIME_US = 0
    CLOCK_CYCLES = 1
    INSTRUCTIONS = 2


KFD_IOCTL_PCS_FLAG_POWER_OF_2 = 0x1
KFD_IOCTL_PCS_QUERY_TYPE_FULL = 1 << 0


class SpmOp(enum.IntEnum):
    ACQUIRE = 0
    RELEASE = 1
    SET_DEST_BUF = 2


class ProfilerOp(enum.IntEnum):
    PMC = 0
    PC_SAMPLE = 1
    VERSION = 2


KFD_IOC_PROFILER_VERSION_NUM = 1
PROFILER_OP_MEMBER: dict[int, str] = {0: "pmc", 1: "pc_sample", 2: "version"}
KFD_CROSS_MEMORY_RW_BIT = 1 << 0

# enum class -> (C prefix, C suffix) of its members' names in the header
_C_NAMES: dict[type, tuple[str, str]] = {
    QueueType: ("KFD_IOC_QUEUE_TYPE_", ""), CachePolicy: ("KFD_IOC_CACHE_POLICY_", ""),
    EventType: ("KFD_IOC_EVENT_", ""), WaitResult: ("KFD_IOC_WAIT_RESULT_", ""),
    HwExceptionResetType: ("KFD_HW_EXCEPTION_", ""), HwExceptionResetCause: ("KFD_HW_EXCEPTION_", ""),
    MemErrorType: ("KFD_MEM_ERR_", ""), AllocFlags: ("KFD_IOC_ALLOC_MEM_FLAGS_", ""),
    SmiEvent: ("KFD_SMI_EVENT_", ""), MigrateTrigger: ("KFD_MIGRATE_TRIGGER_", ""),
    QueueEvictionTrigger: ("KFD_QUEUE_EVICTION_", ""), SvmUnmapTrigger: ("KFD_SVM_UNMAP_TRIGGER_", ""),
    CriuOp: ("KFD_CRIU_OP_", ""), MmioRemap: ("KFD_MMIO_REMAP_", ""),
    SvmFlags: ("KFD_IOCTL_SVM_FLAG_", ""), SvmOp: ("KFD_IOCTL_SVM_OP_", ""),
    SvmLocation: ("KFD_IOCTL_SVM_LOCATION_", ""), SvmAttrType: ("KFD_IOCTL_SVM_ATTR_", ""),
    DbgTrapOverrideMode: ("KFD_DBG_TRAP_OVERRIDE_", ""), DbgTrapMask: ("KFD_DBG_TRAP_MASK_", ""),
    DbgTrapWaveLaunchMode: ("KFD_DBG_TRAP_WAVE_LAUNCH_MODE_", ""),
    DbgTrapAddressWatchMode: ("KFD_DBG_TRAP_ADDRESS_WATCH_MODE_", ""),
    DbgTrapFlags: ("KFD_DBG_TRAP_FLAG_", ""), ExceptionCode: ("EC_", ""),
    DbgRuntimeState: ("DEBUG_RUNTIME_STATE_", ""), RuntimeEnableMode: ("KFD_RUNTIME_ENABLE_MODE_", "_MASK"),
    DbgTrapOp: ("KFD_IOC_DBG_TRAP_", ""), PcSampleOp: ("KFD_IOCTL_PCS_OP_", ""),
    PcSampleMethod: ("KFD_IOCTL_PCS_METHOD_", ""), PcSampleType: ("KFD_IOCTL_PCS_TYPE_", ""),
    SpmOp: ("KFD_IOCTL_SPM_OP_", ""), ProfilerOp: ("KFD_IOC_PROFILER_", ""),
}
_SCALAR_CONSTANTS = (
    "KFD_IOCTL_MAJOR_VERSION", "KFD_IOCTL_MINOR_VERSION", "KFD_MAX_QUEUE_PERCENTAGE",
    "KFD_MAX_QUEUE_PRIORITY", "KFD_MIN_QUEUE_RING_SIZE", "KFD_PROC_FLAG_MFMA_HIGH_PRECISION",
    "NUM_OF_SUPPORTED_GPUS", "MAX_ALLOWED_NUM_POINTS", "MAX_ALLOWED_AW_BUFF_SIZE",
    "MAX_ALLOWED_WAC_BUFF_SIZE", "KFD_INVALID_FD", "KFD_SIGNAL_EVENT_LIMIT", "KFD_SMI_EVENT_MSG_SIZE",
    "KFD_EC_MASK_QUEUE", "KFD_EC_MASK_DEVICE", "KFD_EC_MASK_PROCESS", "KFD_EC_MASK_PACKET",
    "KFD_DBG_QUEUE_ERROR_BIT", "KFD_DBG_QUEUE_INVALID_BIT", "KFD_DBG_QUEUE_ERROR_MASK",
    "KFD_DBG_QUEUE_INVALID_MASK", "KFD_IOCTL_PCS_FLAG_POWER_OF_2", "KFD_IOCTL_PCS_QUERY_TYPE_FULL",
    "KFD_IOC_PROFILER_VERSION_NUM", "KFD_CROSS_MEMORY_RW_BIT", "AMDKFD_IOCTL_BASE",
    "AMDKFD_COMMAND_START", "AMDKFD_COMMAND_END", "AMDKFD_COMMAND_START_2", "AMDKFD_COMMAND_END_2",
)
#: Every numeric #define and enumerator of the header under its C name (requests excluded).
HEADER_CONSTANTS: dict[str, int] = {
    **{f"{pre}{m.name}{suf}": int(m) for cls, (pre, suf) in _C_NAMES.items() for m in cls},
    **{n: globals()[n] for n in _SCALAR_CONSTANTS},
}

# --------------------------------------------------------------------------------------------
# /dev/kfd mmap offsets, doorbells, BO handles (K-PRIV, K-DB)
# --------------------------------------------------------------------------------------------
KFD_MMAP_TYPE_SHIFT = 62
KFD_MMAP_TYPE_MASK = 0x3 << KFD_MMAP_TYPE_SHIFT
KFD_MMAP_TYPE_DOORBELL = 0x3 << KFD_MMAP_TYPE_SHIFT
KFD_MMAP_TYPE_EVENTS = 0x2 << KFD_MMAP_TYPE_SHIFT
KFD_MMAP_TYPE_RESERVED_MEM = 0x1 << KFD_MMAP_TYPE_SHIFT
KFD_MMAP_TYPE_MMIO = 0x0 << KFD_MMAP_TYPE_SHIFT
KFD_GPU_ID_HASH_WIDTH = 16
KFD_MMAP_GPU_ID_SHIFT = 46
KFD_MMAP_GPU_ID_MASK = ((1 << KFD_GPU_ID_HASH_WIDTH) - 1) << KFD_MMAP_GPU_ID_SHIFT
KFD_MMAP_OFFSET_VALUE_MASK = (1 << KFD_MMAP_GPU_ID_SHIFT) - 1
MMAP_TYPE_NAMES = {KFD_MMAP_TYPE_DOORBELL: "DOORBELL", KFD_MMAP_TYPE_EVENTS: "EVENTS",
                   KFD_MMAP_TYPE_RESERVED_MEM: "RESERVED_MEM", KFD_MMAP_TYPE_MMIO: "MMIO"}


def KFD_MMAP_GPU_ID(gpu_id: int) -> int:
    return (gpu_id << KFD_MMAP_GPU_ID_SHIFT) & KFD_MMAP_GPU_ID_MASK


def kfd_mmap_offset(mtype: int, gpu_id: int, offset: int = 0) -> int:
    """Byte offset to mmap /dev/kfd at. `mtype` is a KFD_MMAP_TYPE_* constant (or the bare 2-bit
    type 0..3); bits 61:46 carry the gpu_id, bits 45:0 the value (e.g. doorbell byte offset)."""
    if 0 <= mtype <= 3:
        mtype <<= KFD_MMAP_TYPE_SHIFT
    if mtype & ~KFD_MMAP_TYPE_MASK:
        raise AbiError(f"mmap type {mtype:#x} is not a KFD_MMAP_TYPE_* value")
    if not 0 <= gpu_id < (1 << KFD_GPU_ID_HASH_WIDTH):
        raise AbiError(f"gpu_id {gpu_id:#x} does not fit the {KFD_GPU_ID_HASH_WIDTH}-bit mmap field")
    if not 0 <= offset <= KFD_MMAP_OFFSET_VALUE_MASK:
        raise AbiError(f"mmap offset value {offset:#x} does not fit in 46 bits")
    return mtype | (gpu_id << KFD_MMAP_GPU_ID_SHIFT) | offset


def split_kfd_mmap_offset(value: int) -> tuple[int, int, int]:
    """(KFD_MMAP_TYPE_* constant, gpu_id, offset value) of a /dev/kfd mmap byte offset."""
    if not 0 <= value < (1 << 64):
        raise AbiError(f"mmap offset {value:#x} is not a 64-bit value")
    return (value & KFD_MMAP_TYPE_MASK, (value & KFD_MMAP_GPU_ID_MASK) >> KFD_MMAP_GPU_ID_SHIFT,
            value & KFD_MMAP_OFFSET_VALUE_MASK)


#: Process doorbell slice on SOC15+ (8-byte doorbells x 1024 queues); 4 KiB before SOC15.
DOORBELL_SLICE_SIZE = 8192
KFD_MAX_NUM_OF_QUEUES_PER_PROCESS = 1024


def split_doorbell_offset(doorbell_offset: int, slice_size: int = DOORBELL_SLICE_SIZE) -> tuple[int, int]:
    """create_queue.doorbell_offset -> (offset to mmap /dev/kfd at, byte offset of this queue's
    doorbell inside the mapping), as libhsakmt splits it."""
    return doorbell_offset & ~(slice_size - 1), doorbell_offset & (slice_size - 1)


def make_handle(gpu_id: int, idr: int) -> int:
    """MAKE_HANDLE: the BO handle ALLOC_MEMORY_OF_GPU returns."""
    if not 0 <= gpu_id < (1 << 32) or not 0 <= idr < (1 << 32):
        raise AbiError(f"handle parts out of range: gpu_id={gpu_id:#x}, idr={idr:#x}")
    return (gpu_id << 32) | idr


def handle_gpu_id(handle: int) -> int:
    return (handle >> 32) & 0xFFFFFFFF


def handle_idr(handle: int) -> int:
    return handle & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# Pointer payloads: user memory an ioctl reads/writes through pointers in its arguments
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointerPayload:
    """Memory at `ptr_field` (dotted path into the args) that the kernel reads ("in") or writes
    ("out") or both. Its length is count_field // count_div (capped at max_count) elements of
    elem_size bytes (or of the size in elem_size_field); with count_field None it is one
    elem_size block; elem_size None with no elem_size_field means "size not knowable from the
    arguments". `op` restricts the payload to calls whose `op` field has that value. Counts that
    the kernel rewrites (in/out) should be read after the call for "out" data."""
    ptr_field: str
    count_field: str | None
    elem_size: int | None
    elem_struct: type | None
    direction: str
    elem_size_field: str | None = None
    count_div: int = 1
    max_count: int | None = None
    op: int | None = None
    note: str = ""


P = PointerPayload
POINTER_PAYLOADS: dict[str, list[PointerPayload]] = {
    "WAIT_EVENTS": [P("events_ptr", "num_events", 48, kfd_event_data, "inout")],
    "GET_TILE_CONFIG": [P("tile_config_ptr", "num_tile_configs", 4, None, "out"),
                        P("macro_tile_config_ptr", "num_macro_tile_configs", 4, None, "out")],
    "GET_PROCESS_APERTURES_NEW": [P("kfd_process_device_apertures_ptr", "num_of_nodes", 56,
                                    kfd_process_device_apertures, "out")],
    "MAP_MEMORY_TO_GPU": [P("device_ids_array_ptr", "n_devices", 4, None, "in")],
    "UNMAP_MEMORY_FROM_GPU": [P("device_ids_array_ptr", "n_devices", 4, None, "in")],
    "SET_CU_MASK": [P("cu_mask_ptr", "num_cu_mask", 4, None, "in", count_div=32, max_count=32,
                      note="num_cu_mask is in bits; the kernel reads at most 1024 bits")],
    "GET_QUEUE_WAVE_STATE": [P("ctl_stack_address", "ctl_stack_used_size", 1, None, "out")],
    "GET_DMABUF_INFO": [P("metadata_ptr", "metadata_size", 1, None, "out")],
    "CRIU_OP": [P("devices", "num_devices", 16, kfd_criu_device_bucket, "inout"),
                P("bos", "num_bos", 48, kfd_criu_bo_bucket, "inout"),
                P("priv_data", "priv_data_size", 1, None, "inout")],
    "RUNTIME_ENABLE": [P("r_debug", None, None, None, "in",
                         note="ROCr's r_debug struct; its size is not in the arguments")],
    "DBG_TRAP": [
        P("enable.rinfo_ptr", "enable.rinfo_size", 1, None, "out", op=0),
        P("suspend_queues.queue_array_ptr", "suspend_queues.num_queues", 4, None, "inout", op=6),
        P("resume_queues.queue_array_ptr", "resume_queues.num_queues", 4, None, "inout", op=7),
        P("query_exception_info.info_ptr", "query_exception_info.info_size", 1, None, "out", op=12),
        P("queue_snapshot.snapshot_buf_ptr", "queue_snapshot.num_queues", None,
          kfd_queue_snapshot_entry, "out", elem_size_field="queue_snapshot.entry_size", op=13),
        P("device_snapshot.snapshot_buf_ptr", "device_snapshot.num_devices", None,
          kfd_dbg_device_info_entry, "out", elem_size_field="device_snapshot.entry_size", op=14),
    ],
    "CROSS_MEMORY_COPY_DEPRECATED": [
        P("src_mem_range_array", "src_mem_array_size", 16, kfd_memory_range, "in"),
        P("dst_mem_range_array", "dst_mem_array_size", 16, kfd_memory_range, "in")],
    "RLC_SPM": [P("dest_buf", "buf_size", 1, None, "out")],
    "PC_SAMPLE": [P("sample_info_ptr", "num_sample_info", 40, kfd_pc_sample_info, "inout")],
    "PROFILER": [P("pc_sample.sample_info_ptr", "pc_sample.num_sample_info", 40,
                   kfd_pc_sample_info, "inout", op=1)],
}
del P


def _get_path(s, path: str) -> int:
    for part in path.split("."):
        s = getattr(s, part)
    return s


def payload_extents(name: str, args: ctypes.Structure) -> list[tuple[PointerPayload, int, int]]:
    """(payload, address, byte length) for each pointer payload of ioctl `name` that this call
    actually uses: op matches, pointer non-null, length known and non-zero."""
    out = []
    for p in POINTER_PAYLOADS.get(name, []):
        if p.op is not None and getattr(args, "op", None) != p.op:
            continue
        addr = _get_path(args, p.ptr_field)
        elem = _get_path(args, p.elem_size_field) if p.elem_size_field else p.elem_size
        if not addr or elem is None:
            continue
        count = 1 if p.count_field is None else _get_path(args, p.count_field) // p.count_div
        if p.max_count is not None:
            count = min(count, p.max_count)
        if count * elem:
            out.append((p, addr, count * elem))
    return out


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------
#: ioctl -> field path -> enum/flag class, for readable names of numeric fields.
FIELD_ENUMS: dict[str, dict[str, type]] = {
    "CREATE_QUEUE": {"queue_type": QueueType},
    "SET_MEMORY_POLICY": {"default_policy": CachePolicy, "alternate_policy": CachePolicy},
    "CREATE_EVENT": {"event_type": EventType},
    "WAIT_EVENTS": {"wait_result": WaitResult},
    "ALLOC_MEMORY_OF_GPU": {"flags": AllocFlags},
    "GET_DMABUF_INFO": {"flags": AllocFlags},
    "SVM": {"op": SvmOp},
    "CRIU_OP": {"op": CriuOp},
    "RUNTIME_ENABLE": {"mode_mask": RuntimeEnableMode},
    "DBG_TRAP": {"op": DbgTrapOp, "launch_override.override_mode": DbgTrapOverrideMode,
                 "launch_override.enable_mask": DbgTrapMask,
                 "launch_override.support_request_mask": DbgTrapMask,
                 "launch_mode.launch_mode": DbgTrapWaveLaunchMode,
                 "set_node_address_watch.mode": DbgTrapAddressWatchMode,
                 "set_flags.flags": DbgTrapFlags,
                 "query_exception_info.exception_code": ExceptionCode},
    "RLC_SPM": {"op": SpmOp},
    "PC_SAMPLE": {"op": PcSampleOp},
    "PROFILER": {"op": ProfilerOp},
}


def enum_text(cls: type, value: int) -> str:
    """Readable form of `value` as member(s) of enum/flag class `cls`."""
    if issubclass(cls, enum.IntFlag):
        names = [m.name for m in cls if m.value and value & m.value == m.value]
        rest = value & ~functools.reduce(lambda a, m: a | m.value, cls, 0)
        return "|".join(names + ([f"{rest:#x}"] if rest else [])) or "0"
    try:
        return cls(value).name
    except ValueError:
        return f"{value:#x}?"


def _svm_attr_text(t: int, v: int) -> tuple[str, str]:
    tname = enum_text(SvmAttrType, t)
    if t in (SvmAttrType.SET_FLAGS, SvmAttrType.CLR_FLAGS):
        return tname, enum_text(SvmFlags, v)
    if t in (SvmAttrType.PREFERRED_LOC, SvmAttrType.PREFETCH_LOC):
        return tname, SvmLocation(v).name if v in (0, 0xFFFFFFFF) else f"gpu {v:#x}"
    if t == SvmAttrType.GRANULARITY:
        return tname, f"2^{v} pages"
    return tname, f"gpu {v:#x}"


def decode_ioctl(request: int, data: bytes | bytearray | memoryview) -> dict:
    """(request, argument bytes) -> {"nr", "name", "size", "fields"} with named fields (nested
    dicts/lists for sub-structs/arrays). Union-bearing args show only the member their `op`
    selects (DBG_TRAP, PROFILER). Optional keys: "symbols" (field path -> enum/flag names),
    "extra" (hex of bytes past the known struct, which the kernel ignores), "notes".
    Unknown requests -> {"nr", "name": "UNKNOWN_0x<request>", "size", "raw": hex}."""
    d = lookup(request)
    if d is None:
        return {"nr": ioc_nr(request), "name": ioctl_name(request), "size": ioc_size(request),
                "raw": bytes(data[:ioc_size(request)]).hex()}
    d, usize, raw = _require(request, data)
    s = parse_args(request, raw)
    fields = struct_to_dict(s)
    out: dict = {"nr": d.nr, "name": d.name, "size": usize, "fields": fields}
    notes: list[str] = []
    symbols: dict[str, str] = {}
    union_members = None
    if d.name == "DBG_TRAP":
        union_members, sel = _DBG_TRAP_MEMBERS, DBG_TRAP_OP_MEMBER.get(s.op, "?")
    elif d.name == "PROFILER":
        union_members, sel = _PROFILER_MEMBERS, PROFILER_OP_MEMBER.get(s.op, "?")
    if union_members is not None:
        for m in union_members:
            if m != sel:
                fields.pop(m)
        if sel == "?":
            fields["args_raw"] = bytes(s)[type(s)._u.offset:].hex()
            notes.append(f"op {s.op} is not a known {d.name} operation; union shown raw")
    for path, cls in FIELD_ENUMS.get(d.name, {}).items():
        if path.split(".")[0] in fields:  # skip members of unselected union arms
            symbols[path] = enum_text(cls, _get_path(s, path))
    if d.nr == _SVM_NR:
        have = len(fields["attrs"])
        if s.nattr != have:
            notes.append(f"nattr={s.nattr} but {have} attribute(s) fit in {usize} bytes"
                         + (" (the kernel returns EINVAL)" if s.nattr > have else ""))
        for i, a in enumerate(fields["attrs"]):
            symbols[f"attrs[{i}].type"], symbols[f"attrs[{i}].value"] = _svm_attr_text(a["type"], a["value"])
        if usize > ctypes.sizeof(s):
            out["extra"] = raw[ctypes.sizeof(s):].hex()
    elif usize > ctypes.sizeof(s):
        out["extra"] = raw[ctypes.sizeof(s):].hex()
    if symbols:
        out["symbols"] = symbols
    if notes:
        out["notes"] = notes
    return out


_DBG_TRAP_MEMBERS = _field_names(_kfd_ioctl_dbg_trap_union)
_PROFILER_MEMBERS = _field_names(_kfd_ioctl_profiler_union)
