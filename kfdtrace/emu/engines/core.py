"""What the SDMA engine, the PM4 command processor and the AQL packet processor share: the engine
base class (pointers, fault handling, blocked-wait reports), the dword-ring engine with its
indirect-buffer stack, the compare functions of WAIT_REG_MEM / POLL_REGMEM, the TC atomic
operations of PM4 ATOMIC_MEM and SDMA ATOMIC, memory copy/fill helpers, and the timing model of
the virtual clock.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kfdtrace.emu.base import GpuPageFault, QueueKind, Step
from kfdtrace.errors import GpuFault

# -- virtual clock model (ticks of the 100 MHz GPU clock) ---------------------------------------
PACKET_TICKS = 10          # every executed packet: 100 ns of front-end work
BYTES_PER_TICK = 256       # copies and fills: 25.6 GB/s
WORKGROUP_TICKS = 20       # a dispatch costs this per workgroup (plus PACKET_TICKS)

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF

RAN, IDLE, BLOCKED, STOPPED = Step.RAN, Step.IDLE, Step.BLOCKED, Step.STOPPED
PUSHED = object()          # an execute() result: an indirect buffer was entered (see RingEngine)

# -- compare functions: WAIT_REG_MEM FUNCTION (§3.3) = SDMA POLL_REGMEM FUNC (§4.3) --------------
COMPARE = (
    ("always", lambda v, r: True),
    ("<", lambda v, r: v < r),
    ("<=", lambda v, r: v <= r),
    ("==", lambda v, r: v == r),
    ("!=", lambda v, r: v != r),
    (">=", lambda v, r: v >= r),
    (">", lambda v, r: v > r),
)


def compare_func(func: int, packet: str, address: int):
    """(symbol, predicate) of a FUNCTION code; 7 is reserved → GpuFault."""
    if not 0 <= func < len(COMPARE):
        raise GpuFault(f"{packet} at {address:#x}: compare function {func} is reserved "
                       "(0 always, 1 <, 2 <=, 3 ==, 4 !=, 5 >=, 6 >)", address=address)
    return COMPARE[func]


# -- TC atomic operations: enum TC_OP of the MEC/SDMA firmware interface (ROCr's
# pm4_mec_atomic_mem header; SDMA ATOMIC takes the same opcodes — ROCr uses 47 = ATOMIC_ADD_RTN_64
# to decrement signals). The *_RTN_32 block starts at 0x07, *_RTN_64 at 0x27, the non-returning
# 32-bit block at 0x47 and the 64-bit one at 0x67; within a block an operation has the same offset.
# Float atomics (FCMPSWAP, FMIN, FMAX, FADD) and cache operations are not integer atomics: faulted.

def _inc(old, src, m):      # TC INC: count up, wrap to 0 once old reaches src
    return 0 if old >= src else old + 1


def _dec(old, src, m):      # TC DEC: count down, reload src at 0 (or when above src)
    return src if old == 0 or old > src else old - 1


def _sx(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


def _smin(old, src, m):
    return min(_sx(old, m.bit_length()), _sx(src, m.bit_length())) & m


def _smax(old, src, m):
    return max(_sx(old, m.bit_length()), _sx(src, m.bit_length())) & m


_OPS = {  # offset within a block → (name, new = fn(old, src, mask)); CMPSWAP is special-cased
    0x0: ("SWAP", lambda old, src, m: src),
    0x1: ("CMPSWAP", None),
    0x8: ("ADD", lambda old, src, m: (old + src) & m),
    0x9: ("SUB", lambda old, src, m: (old - src) & m),
    0xA: ("SMIN", _smin),
    0xB: ("UMIN", lambda old, src, m: min(old, src)),
    0xC: ("SMAX", _smax),
    0xD: ("UMAX", lambda old, src, m: max(old, src)),
    0xE: ("AND", lambda old, src, m: old & src),
    0xF: ("OR", lambda old, src, m: old | src),
    0x10: ("XOR", lambda old, src, m: old ^ src),
    0x11: ("INC", _inc),
    0x12: ("DEC", _dec),
}
#: TC op → (name, width in bits, fn or None for CMPSWAP)
TC_ATOMICS: dict[int, tuple[str, int, object]] = {}
for _base, (_w, _rtn) in {0x07: (32, True), 0x27: (64, True), 0x47: (32, False),
                          0x67: (64, False)}.items():
    for _off, (_name, _fn) in _OPS.items():
        TC_ATOMICS[_base + _off] = (f"{_name}{'_RTN' if _rtn else ''}_{_w}", _w, _fn)


def tc_atomic(mem, op: int, addr: int, src: int, cmp: int, packet: str) -> tuple[int, bool]:
    """Apply TC atomic `op` at `addr`: returns (pre-op value, compare satisfied). CMPSWAP stores
    `src` when the old value equals `cmp`."""
    info = TC_ATOMICS.get(op)
    if info is None:
        raise GpuFault(f"{packet}: atomic opcode {op:#x} at {addr:#x} is not an integer TC atomic "
                       "(supported: SWAP, CMPSWAP, ADD, SUB, S/UMIN, S/UMAX, AND, OR, XOR, INC, "
                       "DEC; 32/64-bit, with and without return)", address=addr)
    name, width, fn = info
    if addr & (width // 8 - 1):
        raise GpuFault(f"{packet}: {name} address {addr:#x} is not {width // 8}-byte aligned",
                       address=addr)
    m = M32 if width == 32 else M64
    old = mem.read_u32(addr) if width == 32 else mem.read_u64(addr)
    src &= m
    if fn is None:
        ok = old == (cmp & m)
        new = src if ok else old
    else:
        ok = True
        new = fn(old, src, m)
    if new != old:
        if width == 32:
            mem.write_u32(addr, new)
        else:
            mem.write_u64(addr, new)
    return old, ok


# -- memory helpers ------------------------------------------------------------------------------
def write_view(mem, va: int, size: int) -> np.ndarray | None:
    """A writable zero-copy view, or None when [va, va+size) spans buffer objects (the memory
    then refuses a zero-copy write view; callers fall back to mem.write)."""
    try:
        return mem.view(va, size, write=True)
    except GpuPageFault:
        raise
    except GpuFault:
        return None


def copy_mem(mem, dst: int, src: int, size: int) -> None:
    """dst ← src, `size` bytes, as one numpy copy (memmove semantics for overlaps)."""
    s = mem.view(src, size)
    d = write_view(mem, dst, size)
    if d is None:
        mem.write(dst, s.tobytes())
    else:
        d[:] = s


def fill_mem(mem, dst: int, pattern: int, size: int) -> None:
    """dst ← the 32-bit little-endian `pattern` repeated, truncated to `size` bytes."""
    d = write_view(mem, dst, size)
    target = d if d is not None else np.empty(size, np.uint8)
    n4 = size >> 2
    if n4:
        target[:n4 * 4].view(np.uint32)[:] = pattern & M32
    if size & 3:
        target[n4 * 4:] = np.frombuffer((pattern & M32).to_bytes(4, "little"), np.uint8)[:size & 3]
    if d is None:
        mem.write(dst, target.tobytes())


def run_dispatch(ctx, info) -> None:
    """ctx.shader.dispatch(info); any failure of the executor other than the GPU faults it is
    specified to raise becomes a GpuFault naming the kernel, so a bad kernel stops its queue
    instead of escaping through the ioctl as a traceback."""
    try:
        ctx.shader.dispatch(info, ctx.mem)
    except (GpuPageFault, GpuFault):
        raise
    except Exception as e:
        name = f" ({info.kernel_name})" if info.kernel_name else ""
        raise GpuFault(f"the shader executor failed on the kernel at {info.code_address:#x}{name}: "
                       f"{type(e).__name__}: {e}", address=info.code_address) from e


def aligned(addr: int, n: int, packet: str, va: int) -> None:
    """Packet addresses whose low bits the hardware requires to be zero: a GpuFault otherwise
    (the hardware would silently drop the bits and write elsewhere)."""
    if addr & (n - 1):
        raise GpuFault(f"{packet} at {va:#x}: address {addr:#x} is not {n}-byte aligned",
                       address=va)


def write_dwords(mem, dst: int, values) -> None:
    data = np.asarray(values, dtype=np.uint32).view(np.uint8)
    d = write_view(mem, dst, len(data))
    if d is None:
        mem.write(dst, data.tobytes())
    else:
        d[:] = data


class BlockedWait(NamedTuple):
    """One blocked engine, for hang reports: queue `queue` waits in `packet` until
    `(mem[address] & mask) <func> value`; `last` is the value it saw last."""
    queue: int
    packet: str
    address: int
    value: int
    last: int
    mask: int = M64
    func: str = "=="
    kind: str = ""
    packet_address: int = 0
    note: str = ""

    def __str__(self) -> str:
        where = f" (packet at {self.packet_address:#x})" if self.packet_address else ""
        if self.note and self.func == "":
            return f"{self.kind} queue {self.queue}: {self.packet}{where}: {self.note}"
        cond = (f"(mem[{self.address:#x}] & {self.mask:#x}) {self.func} {self.value:#x}"
                if self.mask not in (M32, M64) else f"mem[{self.address:#x}] {self.func} {self.value:#x}")
        text = (f"{self.kind} queue {self.queue}: {self.packet}{where} waits until {cond}; "
                f"last seen {self.last:#x}")
        return text + (f" ({self.note})" if self.note else "")


class Engine:
    """Base of the three engines. Subclasses implement `_step()` (one packet, or IDLE/BLOCKED);
    this class owns the stopped state, the pointer views and turning faults into `ctx.fault`.

    The write pointer is read from `ctx.wptr_addr` on every step and the read pointer written back
    to `ctx.rptr_addr` after every packet, both through numpy views bound on the first step and
    re-bound whenever the address space changes (allocation, map, unmap), so a step costs no
    allocation and a view never outlives its buffer object."""

    kind: QueueKind
    unit = 1                   # bytes per pointer unit (PM4 4, SDMA 1, AQL 64)

    def __init__(self, ctx):
        self.ctx = ctx
        self.mem = ctx.mem
        self.family = ctx.family
        self.queue_id = ctx.queue_id
        self.stopped = False
        self.suspended = False     # set by the KFD model: inactive queue (percentage 0, evicted)
        self.busy = 0              # extra clock ticks the last packet cost (the scheduler takes them)
        self.rptr = 0              # read pointer, in the queue's units (monotonic)
        self.packets = 0           # packets executed
        self.last_packet = ""      # name of the packet being executed (for fault reports)
        self.packet_va = 0         # its address
        self.fault_message: str | None = None
        self._wait: BlockedWait | None = None
        self._wp = None            # uint64[1] view of the write pointer
        self._rp = None            # uint64[1] view of the read pointer
        self._space = getattr(ctx.mem, "space", None)   # GpuView's address space (generation)
        self._gen = -1

    # -- public ---------------------------------------------------------------------------------
    def step(self) -> Step:
        """Execute one packet (RAN) or report IDLE / BLOCKED / STOPPED."""
        if self.stopped:
            return STOPPED
        if self.suspended:
            return IDLE
        try:
            space = self._space
            if self._wp is None or (space is not None and space.generation != self._gen):
                self._bind_views(first=self._wp is None)
            return self._step()
        except GpuPageFault as e:
            return self._fault(e.va, e.write, f"page fault: {'write' if e.write else 'read'} of "
                                              f"{e.size} bytes at {e.va:#x}")
        except GpuFault as e:
            return self._fault(e.address if e.address is not None else self.packet_va, False, str(e))

    def bind(self) -> None:
        """Re-read the queue's ring and pointer addresses from the context (the KFD model calls
        this after UPDATE_QUEUE); the read pointer is re-read from memory."""
        self._wp = None

    def stop(self) -> None:
        """Destroy: the engine never runs again."""
        self.stopped = True

    def blocked_on(self) -> BlockedWait | None:
        """What this engine waits for (its last step was BLOCKED, or it holds an incomplete
        packet), else None."""
        return None if self.stopped else self._wait

    # -- for subclasses --------------------------------------------------------------------------
    def _bind_views(self, first: bool) -> None:
        ctx, mem = self.ctx, self.mem
        self._wp = mem.view(ctx.wptr_addr, 8).view(np.uint64)
        self._rp = mem.view(ctx.rptr_addr, 8, write=True).view(np.uint64)
        if first:
            self.rptr = int(self._rp[0])
        self._bind_ring()
        if self._space is not None:
            self._gen = self._space.generation

    def _bind_ring(self) -> None:
        pass

    def _step(self) -> Step:
        raise NotImplementedError

    def _block(self, packet: str, address: int, value: int, last: int, mask: int = M64,
               func: str = "==", note: str = "") -> Step:
        self._wait = BlockedWait(self.queue_id, packet, address, value, last, mask, func,
                                 self.kind.name, self.packet_va, note)
        return BLOCKED

    def _incomplete(self, packet: str, need: int, have: int, unit: str) -> Step:
        """The packet at rptr is longer than what the producer has submitted: wait for more."""
        self._wait = BlockedWait(self.queue_id, packet, 0, 0, 0, M64, "", self.kind.name,
                                 self.packet_va, f"packet needs {need} {unit}, only {have} "
                                                 "submitted (write pointer)")
        return IDLE

    def _fault(self, va: int, write: bool, message: str) -> Step:
        self.stopped = True
        self._wait = None
        where = (f" [{self.last_packet} at {self.packet_va:#x}, read pointer {self.rptr:#x}]"
                 if self.last_packet else f" [read pointer {self.rptr:#x}]")
        text = f"{self.kind.name} queue {self.queue_id}: {message}{where}"
        self.fault_message = text
        self.ctx.fault(va, write, text)
        return STOPPED


class RingEngine(Engine):
    """A ring of dwords (PM4: pointers in dwords; SDMA: pointers in bytes) plus a stack of
    indirect buffers, executed one packet per step.

    Subclasses give `_decode(dwords, pos) -> Packet` (the packets module's decoder) and
    `_execute(pkt, va, in_ib) -> Step | None | PUSHED` (None = done; BLOCKED = retry the same
    packet later; PUSHED = the packet entered an indirect buffer with `_push_ib`). While an IB
    runs, the ring's read pointer stays on the packet that called it, so a fault inside the IB
    leaves rptr at that packet; it moves on when the outermost IB returns."""

    max_ib_depth = 2
    engine_name = "?"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._ring = None          # uint32 view of the ring
        self._ring_bytes = 0
        self._ring_base = 0
        self._frames: list[list] = []   # [va, uint32 view, size dwords, pos dwords]
        self._pending = 0          # ring units of the packet that entered the current IB stack
        self._skip = 0             # dwords still to skip (SDMA COND_EXE with a false condition)
        self.decode_errors = 0

    def _bind_ring(self) -> None:
        ctx = self.ctx
        size = ctx.ring_size
        if size <= 0 or size & 3:
            raise GpuFault(f"{self.kind.name} queue {self.queue_id}: ring size {size} is not a "
                           "positive number of dwords", address=ctx.ring_base)
        self._ring = self.mem.view(ctx.ring_base, size).view(np.uint32)
        self._ring_bytes = size
        self._ring_base = ctx.ring_base
        self.rebind_frames()

    def rebind_frames(self) -> None:
        """Re-take the views of the IBs in flight (the address space changed)."""
        for fr in self._frames:
            fr[1] = self.mem.view(fr[0], fr[2] * 4).view(np.uint32)

    # -- indirect buffers ---------------------------------------------------------------------
    def _push_ib(self, va: int, size_dw: int, packet: str) -> None:
        if len(self._frames) >= self.max_ib_depth:
            raise GpuFault(f"{packet} at {self.packet_va:#x}: indirect buffers nested deeper than "
                           f"{self.max_ib_depth} levels", address=self.packet_va)
        if va & 3:
            raise GpuFault(f"{packet}: IB address {va:#x} is not dword aligned", address=va)
        arr = self.mem.view(va, size_dw * 4).view(np.uint32)
        self._frames.append([va, arr, size_dw, 0])

    def _step_ib(self) -> Step:
        """Execute the next packet of the innermost IB; pops finished IBs."""
        frames = self._frames
        fr = frames[-1]
        va, arr, size, pos = fr
        self.packet_va = pkt_va = va + pos * 4
        pkt = self._decode(arr, pos)
        if pkt.name == "TRUNCATED":
            raise GpuFault(f"{self.engine_name} {pkt.error} at {pkt_va:#x}: the packet runs past the "
                           f"end of the indirect buffer at {va:#x} ({size} dwords)", address=pkt_va)
        self.last_packet = pkt.name
        r = self._execute(pkt, pkt_va, True)
        if r is BLOCKED:
            return BLOCKED
        fr[3] = pos + pkt.length + self._skip
        self._skip = 0
        while frames and frames[-1][3] >= frames[-1][2]:
            frames.pop()
        return RAN

    # -- the ring -----------------------------------------------------------------------------
    def _step(self) -> Step:
        if self._frames:
            return self._step_frames()
        wptr = int(self._wp[0])
        rptr = self.rptr
        if rptr == wptr:
            self._wait = None
            return IDLE
        unit = self.unit
        have = (wptr - rptr) * unit        # bytes submitted and not yet read
        size = self._ring_bytes
        if have < 0 or have > size or have & 3:
            self.last_packet = ""
            raise GpuFault(self._bad_wptr(wptr), address=self.ctx.wptr_addr)
        pos = (rptr * unit) % size >> 2
        self.packet_va = va = self._ring_base + pos * 4
        have >>= 2                         # in dwords
        if self._skip:                     # COND_EXE skipping ring dwords
            return self._skip_ring(rptr, have)
        pkt = self._decode(self._ring, pos)
        n = pkt.length
        name = pkt.name
        if name == "TRUNCATED":            # runs over the ring's end: read it wrapped
            wrapped = self._decode_wrapped(pos, pkt, have)
            if wrapped is not None:
                pkt = wrapped
                n, name = pkt.length, pkt.name
            else:
                n = max(pkt.fields.get("needed", n), have + 1)
        if n > have:                       # not all of it submitted yet (dwords past wptr are stale)
            if have >= size >> 2:          # ... and it never can be: the ring is full
                raise GpuFault(f"{self.engine_name} {name} at {va:#x} needs {n} dwords, more than "
                               f"the {size >> 2}-dword ring holds", address=va)
            return self._incomplete(name, n, have, "dwords")
        self.last_packet = name
        r = self._execute(pkt, va, False)
        if r is BLOCKED:
            return BLOCKED
        self._wait = None
        self.packets += 1
        if r is PUSHED:
            self._pending = n * 4 // unit
            return RAN
        if self._skip:
            k = min(self._skip, have - n)
            self._skip -= k
            n += k
        self.rptr = rptr = rptr + n * 4 // unit
        self._rp[0] = rptr
        return RAN

    def _step_frames(self) -> Step:
        r = self._step_ib()
        if r is RAN:
            self.packets += 1
            self._wait = None
            if not self._frames:           # the outermost IB returned: its ring packet is done
                self.rptr += self._pending
                self._rp[0] = self.rptr
        return r

    def _skip_ring(self, rptr: int, have: int) -> Step:
        n = min(self._skip, have)
        self._skip -= n
        self.rptr = rptr + n * 4 // self.unit
        self._rp[0] = self.rptr
        self.last_packet = "COND_EXE skip"
        return RAN

    def _decode_wrapped(self, pos: int, pkt, have: int):
        """Decode a packet that continues at the ring's start, from submitted dwords only; None
        if it needs more than `have` dwords (the producer has not published all of it)."""
        ring, ring_dw = self._ring, self._ring_bytes >> 2
        k = 0
        while pkt.name == "TRUNCATED":
            need = pkt.fields.get("needed", pkt.length + 1)
            if need <= k or k >= have:
                return None
            k = min(need, have)
            head = ring[pos:pos + k].tolist()
            pkt = self._decode(head + ring[:k - len(head)].tolist(), 0)
        return pkt

    def _bad_wptr(self, wptr: int) -> str:
        unit = "dwords" if self.unit == 4 else "bytes"
        if wptr < self.rptr:
            why = "is behind the read pointer (pointers are monotonic 64-bit)"
        elif (wptr - self.rptr) * self.unit & 3:
            why = "is not on a dword boundary"
        else:
            why = f"is more than a ring ({self.ctx.ring_size} bytes) ahead of the read pointer"
        return (f"write pointer {wptr:#x} {why} (read pointer {self.rptr:#x}, units: {unit}) "
                f"at {self.ctx.wptr_addr:#x}")

    def _decode(self, dwords, pos: int):
        raise NotImplementedError

    def _execute(self, pkt, va: int, in_ib: bool):
        raise NotImplementedError
