"""Kernel-assigned ids, recorded vs. replayed.

Replay re-issues every recorded ioctl with its recorded argument bytes, patched through the ABI
structs (`kfdtrace.abi.ioctl`): ids the kernel handed out when the trace was recorded (gpu_id,
BO handles, queue ids, doorbell offsets, event ids and signal slots, render-node mmap offsets, file
descriptors) are replaced by the ones the target handed out for the same calls. Pointer payloads
(device-id arrays, event arrays, output buffers) are rebuilt in the replayer's memory from the
recorded bytes, with the ids inside them remapped, and the pointer fields aimed at them. GPU
virtual addresses are never remapped: replay places every allocation at its recorded address.
"""
from __future__ import annotations

import ctypes
import struct

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError

#: ioctls whose input `handle` / `queue_id` / `event_id` field names a kernel-assigned id
HANDLE_IN = {"FREE_MEMORY_OF_GPU", "MAP_MEMORY_TO_GPU", "UNMAP_MEMORY_FROM_GPU", "EXPORT_DMABUF",
             "IPC_EXPORT_HANDLE"}
QUEUE_IN = {"DESTROY_QUEUE", "UPDATE_QUEUE", "SET_CU_MASK", "GET_QUEUE_WAVE_STATE", "ALLOC_QUEUE_GWS"}
EVENT_IN = {"DESTROY_EVENT", "SET_EVENT", "RESET_EVENT"}
GPU_ARRAYS = {"MAP_MEMORY_TO_GPU", "UNMAP_MEMORY_FROM_GPU"}
EVENT_DATA = 48          # sizeof(struct kfd_event_data); event_id @40 (reference §1.4)
EVENT_ID_OFF = 40
SLICE_MASK = abi.DOORBELL_SLICE_SIZE - 1


class RemapError(KfdtraceError):
    """A recorded id with no counterpart in the replay (the call that created it failed here)."""


def _get(s, path: str):
    for part in path.split("."):
        s = getattr(s, part)
    return s


def _set(s, path: str, value) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        s = getattr(s, part)
    setattr(s, parts[-1], value)


class Remap:
    """Recorded -> replayed id maps, filled as the replay goes (`learn`) and applied to ioctl
    arguments (`patch`), mmap offsets (`mmap_offset`) and doorbell addresses (`doorbell`)."""

    def __init__(self, gpu: dict[int, int], render_minor: dict[int, int] | None = None):
        self.gpu = dict(gpu)
        self.render_minor = dict(render_minor or {})
        self.fd: dict[int, int] = {}
        self.handle: dict[int, int] = {}
        self.gem: dict[int, list[tuple[int, int, int]]] = {}   # tgt gpu -> [(rec off, size, tgt off)]
        self.queue: dict[int, int] = {}
        self.doorbell_off: dict[int, int] = {}
        self.event: dict[int, int] = {}
        self.slot: dict[int, int] = {}
        self.why_missing: dict[tuple[str, int], str] = {}      # ("handle", rec) -> reason

    # -- small maps -----------------------------------------------------------------------------------
    def _map(self, table: dict, kind: str, rec: int, what: str) -> int:
        try:
            return table[rec]
        except KeyError:
            why = self.why_missing.get((kind, rec))
            raise RemapError(f"{what}: recorded {kind} {rec:#x} has no counterpart in the replay"
                             + (f" ({why})" if why else "")) from None

    def gpu_id(self, rec: int, what: str = "") -> int:
        return rec if rec == 0 else self._map(self.gpu, "gpu_id", rec, what)

    def missing(self, kind: str, rec: int, why: str) -> None:
        self.why_missing[(kind, rec)] = why

    @property
    def events_identity(self) -> bool:
        return all(k == v for k, v in self.event.items()) and all(k == v for k, v in self.slot.items())

    # -- ioctl arguments -----------------------------------------------------------------------------
    def patch(self, name: str, request: int, arg_in: bytes, payloads, resolve, what: str):
        """(argument bytes for the target, [(payload dict, ctypes buffer)] to keep alive and
        compare). `resolve` turns a recorded bytes-or-blob field into bytes."""
        args = abi.parse_args(request, arg_in)
        for fname, *_ in getattr(type(args), "_fields_", ()):
            if fname == "gpu_id":
                args.gpu_id = self.gpu_id(args.gpu_id, what)
        if name == "ACQUIRE_VM":
            args.drm_fd = self._map(self.fd, "file descriptor", args.drm_fd, what)
        elif name in HANDLE_IN:
            args.handle = self._map(self.handle, "handle", args.handle, what)
        elif name in QUEUE_IN:
            args.queue_id = self._map(self.queue, "queue id", args.queue_id, what)
        elif name in EVENT_IN:
            args.event_id = self._map(self.event, "event id", args.event_id, what)
        elif name == "CREATE_EVENT" and args.event_page_offset:
            args.event_page_offset = self._map(self.handle, "handle", args.event_page_offset, what)
        elif name == "ALLOC_MEMORY_OF_GPU" and args.flags & (abi.AllocFlags.DOORBELL | abi.AllocFlags.MMIO_REMAP) \
                and args.mmap_offset:
            args.mmap_offset = self.kfd_offset(args.mmap_offset, what)
        keep = []
        for p in payloads or ():
            data_in = resolve(p.get("data_in"))
            data_out = resolve(p.get("data_out"))
            size = max(len(data_in or b""), len(data_out or b""))
            if not size:
                continue
            raw = bytearray(data_in or bytes(size))
            if name in GPU_ARRAYS and data_in is not None:
                ids = struct.unpack(f"<{len(raw) // 4}I", raw[:len(raw) // 4 * 4])
                struct.pack_into(f"<{len(ids)}I", raw, 0, *(self.gpu_id(i, what) for i in ids))
            elif name == "WAIT_EVENTS" and data_in is not None:
                for off in range(0, len(raw) - EVENT_DATA + 1, EVENT_DATA):
                    e = struct.unpack_from("<I", raw, off + EVENT_ID_OFF)[0]
                    struct.pack_into("<I", raw, off + EVENT_ID_OFF, self._map(self.event, "event id", e, what))
            buf = (ctypes.c_char * size).from_buffer_copy(bytes(raw))
            _set(args, p["field"], ctypes.addressof(buf))
            keep.append((p, buf))
        return bytearray(abi.pack_args(request, args, arg_in)), keep

    def learn(self, name: str, request: int, rec_out: bytes, new_out: bytes) -> None:
        """Record the ids a successful call returned, next to the ones it returned when recorded."""
        if name not in ("ALLOC_MEMORY_OF_GPU", "CREATE_QUEUE", "CREATE_EVENT"):
            return
        r, t = abi.parse_args(request, rec_out), abi.parse_args(request, new_out)
        if name == "ALLOC_MEMORY_OF_GPU":
            self.handle[r.handle] = t.handle
            if not r.flags & (abi.AllocFlags.DOORBELL | abi.AllocFlags.MMIO_REMAP | abi.AllocFlags.USERPTR):
                self.gem.setdefault(t.gpu_id, []).append((r.mmap_offset, r.size, t.mmap_offset))
        elif name == "CREATE_QUEUE":
            self.queue[r.queue_id] = t.queue_id
            self.doorbell_off[r.doorbell_offset] = t.doorbell_offset
        else:
            self.event[r.event_id] = t.event_id
            if r.event_page_offset or t.event_page_offset:
                self.slot[r.event_slot_index] = t.event_slot_index

    def forget(self, name: str, rec_args) -> None:
        """A successful destroy/free: the recorded id may be handed out again."""
        if name == "FREE_MEMORY_OF_GPU":
            self.handle.pop(rec_args.handle, None)
        elif name == "DESTROY_QUEUE":
            self.queue.pop(rec_args.queue_id, None)
        elif name == "DESTROY_EVENT":
            self.event.pop(rec_args.event_id, None)

    # -- mmap offsets and doorbells -------------------------------------------------------------------
    def kfd_offset(self, rec: int, what: str) -> int:
        """A /dev/kfd mmap offset (type | gpu_id << 46 | value, reference §1.6) for the target:
        the gpu_id remapped, a doorbell slice offset moved to the target's slice."""
        rec &= (1 << 64) - 1
        mtype, gid, value = abi.split_kfd_mmap_offset(rec)
        if mtype == abi.KFD_MMAP_TYPE_EVENTS:
            return rec
        tgid = self.gpu_id(gid, what) if gid else 0
        if mtype == abi.KFD_MMAP_TYPE_DOORBELL:
            for r, t in self.doorbell_off.items():
                if r & ~SLICE_MASK == rec & ~SLICE_MASK:
                    return (t & ~SLICE_MASK) | (rec & SLICE_MASK)
        return abi.kfd_mmap_offset(mtype, tgid, value)

    def render_offset(self, tgt_gpu: int | None, rec: int, what: str) -> int:
        """A render-node (GEM) mmap offset of a recorded BO, for the same BO in the replay."""
        for gpu, entries in self.gem.items():
            if tgt_gpu is not None and gpu != tgt_gpu:
                continue
            for r, size, t in entries:
                if r <= rec < r + size:
                    return t + (rec - r)
        raise RemapError(f"{what}: no buffer object of the replay corresponds to the recorded "
                         f"render-node mmap offset {rec:#x} (its ALLOC_MEMORY_OF_GPU failed or was "
                         "not recorded)")

    def doorbell(self, rec_addr: int, rec_off: int, what: str) -> int:
        """Where the replay rings a queue's doorbell: same mapping (same VA), the target's slot."""
        tgt = self._map(self.doorbell_off, "doorbell offset", rec_off, what)
        return rec_addr - (rec_off & SLICE_MASK) + (tgt & SLICE_MASK)

    def to_dict(self) -> dict:
        def hx(d):
            return {hex(k): hex(v) for k, v in d.items()}
        return {"gpu_id": hx(self.gpu), "handles": hx(self.handle), "queues": self.queue,
                "events": self.event, "slots": self.slot, "doorbell_offsets": hx(self.doorbell_off),
                "render_minor": self.render_minor}


__all__ = ["Remap", "RemapError"]
