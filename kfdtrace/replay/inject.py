"""Fault injection: the spec language of `kfdtrace replay --inject SPEC`, and the packet editing
that faults, `--unsafe-drop-wait` and event-id remapping share.

Specs (S = submission number in trace order, as the report and `kfdtrace dump` number them):

    ioctl:NAME:N:ERRNO     the N-th call (1-based, trace order) of AMDKFD_IOC_NAME is not issued and
                           fails with ERRNO (a name such as ENOMEM, or a number)
    drop-signal:S          the packets of S that signal (RELEASE_MEM/FENCE/WRITE_DATA writes,
                           interrupts, AQL completion signals) become NOPs: the fence never fires
    delay-signal:S:N       those packets are taken out of S and submitted on the same queue after N
                           more submissions (or before the next CPU wait, whichever comes first)
    flip:S:D:K             flip bit K of dword D of S's ring bytes (a corrupted packet)
    memflip:S:ADDR:K       flip bit K (0-7) of the byte at ADDR right before S is submitted; ADDR is a
                           GPU VA (0x...) or aI+OFF (byte OFF of allocation I, trace order)
    pagefault:S[:ADDR]     emulated GPU: S's queue faults on an unmapped address (ADDR, default one
                           outside every allocation) just before S's packets
    hang:S                 emulated GPU: S's queue stops at S (a wait that is never satisfied is
                           placed before S's packets)

Each fault is listed in the report with where it was applied and what the stack did next: the first
consequence the replay observed after it — "error surfaced" (an ioctl failed, a GPU fault was
raised), "hang detected" (a watchdog expired), "divergence" (memory or a waited-for value differs
from the recording) or "none".
"""
from __future__ import annotations

import errno as _errno
import re
import struct
from dataclasses import dataclass, field

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError
from kfdtrace.packets import aql, pm4, sdma
from kfdtrace.replay.plan import Plan, Submission, SyncOp

KINDS = ("ioctl", "drop-signal", "delay-signal", "flip", "memflip", "pagefault", "hang")
EMU_ONLY = ("pagefault", "hang")
SPEC_HELP = """fault specs (S = submission number, trace order):
  ioctl:NAME:N:ERRNO   N-th AMDKFD_IOC_NAME call fails with ERRNO (e.g. ioctl:ALLOC_MEMORY_OF_GPU:2:ENOMEM)
  drop-signal:S        S's signal packets become NOPs (the fence never fires)
  delay-signal:S:N     S's signal packets are submitted N submissions later
  flip:S:D:K           flip bit K of dword D of submission S
  memflip:S:ADDR:K     flip bit K of the byte at ADDR (0x... or aI+OFF) before S
  pagefault:S[:ADDR]   (emulated GPU) S's queue page-faults at ADDR before S
  hang:S               (emulated GPU) S's queue hangs at S"""


class InjectError(KfdtraceError):
    """A fault spec that cannot be parsed or does not fit the trace."""


@dataclass
class Fault:
    spec: str
    kind: str
    sub: int | None = None        # submission index
    name: str = ""                # ioctl name
    nth: int = 0
    errno: int = 0
    dword: int = 0
    bit: int = 0
    addr: int | None = None
    count: int = 0
    applied: dict | None = None   # where/when it was applied (record, submission, queue, seq, t)
    outcome: str = "not reached"
    detail: str = ""
    events: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "submission": self.sub, "applied": self.applied,
                "outcome": self.outcome, "detail": self.detail}


def _int(text: str, what: str, spec: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise InjectError(f"--inject {spec!r}: {what} {text!r} is not a number") from None


def _errno_value(text: str, spec: str) -> int:
    t = text.upper()
    if t.isdigit():
        return int(t)
    v = getattr(_errno, t, None)
    if not isinstance(v, int):
        raise InjectError(f"--inject {spec!r}: unknown errno {text!r} (use a name such as ENOMEM, "
                          "EINVAL, EBUSY, or a number)")
    return v


def parse_spec(spec: str, plan: Plan | None = None) -> Fault:
    """Parse one spec; with `plan`, check it against the trace (submission exists, ioctl call
    exists, address resolves)."""
    parts = spec.strip().split(":")
    kind = parts[0].lower()
    if kind not in KINDS:
        raise InjectError(f"--inject {spec!r}: unknown fault kind {parts[0]!r}; kinds: {', '.join(KINDS)}\n"
                          + SPEC_HELP)
    arity = {"ioctl": (4, 4), "drop-signal": (2, 2), "delay-signal": (3, 3), "flip": (4, 4),
             "memflip": (4, 4), "pagefault": (2, 3), "hang": (2, 2)}[kind]
    if not arity[0] <= len(parts) <= arity[1]:
        raise InjectError(f"--inject {spec!r}: {kind} takes {arity[0] - 1}"
                          f"{'' if arity[0] == arity[1] else f'-{arity[1] - 1}'} fields\n" + SPEC_HELP)
    f = Fault(spec, kind)
    if kind == "ioctl":
        f.name = parts[1].upper().removeprefix("AMDKFD_IOC_")
        if f.name not in abi.IOCTLS_BY_NAME:
            raise InjectError(f"--inject {spec!r}: no KFD ioctl named {parts[1]!r}")
        f.nth = _int(parts[2], "call number", spec)
        f.errno = _errno_value(parts[3], spec)
        if f.nth < 1 or f.errno <= 0:
            raise InjectError(f"--inject {spec!r}: the call number counts from 1 and the errno must be positive")
        if plan is not None and plan.ioctl_counts.get(f.name, 0) < f.nth:
            raise InjectError(f"--inject {spec!r}: the trace has {plan.ioctl_counts.get(f.name, 0)} "
                              f"AMDKFD_IOC_{f.name} calls")
        return f
    f.sub = _int(parts[1], "submission", spec)
    if plan is not None:
        try:
            plan.submission(f.sub)
        except KfdtraceError as e:
            raise InjectError(f"--inject {spec!r}: {e}") from None
    if kind == "delay-signal":
        f.count = _int(parts[2], "count", spec)
    elif kind == "flip":
        f.dword, f.bit = _int(parts[2], "dword", spec), _int(parts[3], "bit", spec)
        if not 0 <= f.bit < 32:
            raise InjectError(f"--inject {spec!r}: bit {f.bit} is not 0..31")
        if plan is not None and f.dword * 4 >= len(plan.submissions[f.sub].data):
            raise InjectError(f"--inject {spec!r}: submission #{f.sub} has "
                              f"{len(plan.submissions[f.sub].data) // 4} dwords")
    elif kind == "memflip":
        f.addr, f.bit = _address(parts[2], spec, plan), _int(parts[3], "bit", spec)
        if not 0 <= f.bit < 8:
            raise InjectError(f"--inject {spec!r}: bit {f.bit} is not 0..7 (a byte's bits)")
    elif kind == "pagefault" and len(parts) == 3:
        f.addr = _address(parts[2], spec, plan)
    return f


def _address(text: str, spec: str, plan: Plan | None) -> int:
    m = re.fullmatch(r"a(\d+)(?:\+(\w+))?", text.strip().lower())
    if m is None:
        return _int(text, "address", spec)
    if plan is None:
        raise InjectError(f"--inject {spec!r}: {text} needs the trace to resolve")
    i, off = int(m.group(1)), _int(m.group(2) or "0", "offset", spec)
    if i >= len(plan.allocs):
        raise InjectError(f"--inject {spec!r}: allocation a{i} does not exist (the trace has "
                          f"{len(plan.allocs)}: a0..a{len(plan.allocs) - 1})")
    a = plan.allocs[i]
    if not 0 <= off < a.size:
        raise InjectError(f"--inject {spec!r}: offset {off:#x} is outside {a.describe()}")
    return a.va + off


def parse_specs(specs, plan: Plan | None = None, backend: str | None = None) -> list[Fault]:
    faults = [parse_spec(s, plan) for s in specs or ()]
    if backend not in (None, "emu"):
        bad = [f.spec for f in faults if f.kind in EMU_ONLY]
        if bad:
            raise InjectError(f"--inject {', '.join(bad)}: page faults and queue hangs are injected on "
                              f"the emulated GPU only (use --backend emu), not on {backend}")
    return faults


def unmapped_address(plan: Plan) -> int:
    """An address no allocation of the trace ever covers: a page above the highest one."""
    top = max((a.end for a in plan.allocs), default=1 << 32)
    return ((top + (1 << 21)) & ~((1 << 20) - 1))


# -- editing a submission's packets ----------------------------------------------------------------
def nop_dwords(engine: str, n: int) -> list[int]:
    """`n` dwords the engine skips: PM4 NOP (one-dword filler for n == 1), SDMA zero dwords (each
    a one-dword NOP) — reference §3.1, §4.4."""
    if engine == "pm4":
        return [pm4.FILLER] if n == 1 else pm4.build("NOP", count=n - 2, body=[0] * (n - 1))
    return [0] * n


class Patch:
    """A submission's bytes as they will be written: ring bytes (`ring`), indirect buffers
    (`ibs`, same order as the recording's), packets to put before (`prefix`) and after (`held`,
    submitted later by delay-signal). Edits keep every packet's length unless stated."""

    def __init__(self, sub: Submission):
        self.sub = sub
        self.ring = bytearray(sub.data)
        self.ibs = [bytearray(b) if b is not None else None for _, _, b in sub.ibs]
        self.prefix = b""
        self.held = b""
        self.notes: list[str] = []

    def buf(self, ib: int | None) -> bytearray:
        return self.ring if ib is None else self.ibs[ib]

    def dwords(self, ib: int | None, dw: int, n: int) -> list[int]:
        return list(struct.unpack_from(f"<{n}I", self.buf(ib), dw * 4))

    def put(self, ib: int | None, dw: int, dwords) -> None:
        struct.pack_into(f"<{len(dwords)}I", self.buf(ib), dw * 4, *dwords)

    def packet_engine(self, ib: int | None) -> str:
        return "pm4" if ib is not None and self.sub.engine == "aql" else self.sub.engine

    def nop(self, op: SyncOp) -> bytes:
        """Turn the packet holding `op` into a no-op of the same length; return its old bytes.
        AQL barriers become a barrier-AND without dependencies that keeps the completion signal."""
        eng = self.packet_engine(op.ib)
        old = bytes(self.buf(op.ib)[op.dw * 4:(op.dw + op.length) * 4])
        if eng == "aql":
            hdr, cs = struct.unpack_from("<I", old)[0], struct.unpack_from("<Q", old, 56)[0]
            new = aql.build("BARRIER_AND", barrier=(hdr >> 8) & 1, acquire_fence_scope=(hdr >> 9) & 3,
                            release_fence_scope=(hdr >> 11) & 3, completion_signal=cs)
            self.buf(op.ib)[op.dw * 4:op.dw * 4 + 64] = new
        else:
            self.put(op.ib, op.dw, nop_dwords(eng, op.length))
        return old

    def drop_signal(self, op: SyncOp) -> bytes:
        """Remove what `op` signals; return packet bytes that would signal it later (delay):
        the packet itself (PM4/SDMA, also when it sat in an IB) or, for an AQL completion signal,
        a barrier-AND without dependencies carrying that completion signal."""
        if self.packet_engine(op.ib) == "aql":
            buf = self.buf(op.ib)
            cs = struct.unpack_from("<Q", buf, op.dw * 4 + 56)[0]
            struct.pack_into("<Q", buf, op.dw * 4 + 56, 0)
            return aql.build("BARRIER_AND", completion_signal=cs)
        return self.nop(op)

    def rebuild(self, op: SyncOp, **changes) -> None:
        """Re-encode the packet holding `op` with some fields changed (event ids, mailbox
        addresses), through the packet tables' builder; the length must not change."""
        eng = self.packet_engine(op.ib)
        p = self.sub.packets[op.index]
        mod = {"pm4": pm4, "sdma": sdma}[eng]
        fields = {k: v for k, v in p.fields.items() if k not in ("byte_count", "reg")}
        fields.update(changes)
        try:
            new = mod.build(p.name, self.sub.family, **fields)
        except KfdtraceError as e:
            raise KfdtraceError(f"{self.sub.label()}: cannot re-encode {p.name} with {changes}: {e}") from None
        if len(new) != op.length:
            raise KfdtraceError(f"{self.sub.label()}: re-encoded {p.name} is {len(new)} dwords, not {op.length}")
        self.put(op.ib, op.dw, new)

    def flip(self, dword: int, bit: int) -> None:
        v = self.dwords(None, dword, 1)[0] ^ (1 << bit)
        self.put(None, dword, [v])

    def units(self) -> bytes:
        return self.prefix + bytes(self.ring)


def never_wait(engine: str, queue) -> bytes:
    """A packet that waits forever: a poll of the queue's own read pointer (low dword) for
    0xFFFFFFFF, which a read pointer never reaches (AQL: a barrier-value on it)."""
    if engine == "pm4":
        d = pm4.build("WAIT_REG_MEM", queue.family, function=3, mem_space=1, poll_addr=queue.rptr_addr,
                      reference=0xFFFFFFFF, mask=0xFFFFFFFF, poll_interval=4)
    elif engine == "sdma":
        d = sdma.build("POLL_REGMEM", queue.family, mem_poll=1, func=3, addr=queue.rptr_addr,
                       value=0xFFFFFFFF, mask=0xFFFFFFFF, interval=10, retry_count=0xFFF)
    else:
        return aql.build("BARRIER_VALUE", signal=queue.rptr_addr - 8, value=-1, mask=-1, cond=0)
    return struct.pack(f"<{len(d)}I", *d)


def fault_write(engine: str, queue, addr: int) -> bytes:
    """A packet that makes the GPU touch `addr` (which nothing maps): a write (PM4 WRITE_DATA,
    SDMA WRITE_UNTILED) or, on AQL, a barrier depending on a signal there."""
    if engine == "pm4":
        d = pm4.build("WRITE_DATA", queue.family, dst_sel=5, wr_confirm=1, dst_addr=addr, data=[0xDEAD])
    elif engine == "sdma":
        d = sdma.build("WRITE_UNTILED", queue.family, dst_addr=addr, data=[0xDEAD])
    else:
        return aql.build("BARRIER_AND", dep_signal=[addr, 0, 0, 0, 0])
    return struct.pack(f"<{len(d)}I", *d)


__all__ = ["Fault", "parse_spec", "parse_specs", "InjectError", "Patch", "nop_dwords", "never_wait",
           "fault_write", "unmapped_address", "SPEC_HELP", "KINDS"]
