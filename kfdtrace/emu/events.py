"""KFD events of the emulated device, with the semantics of K-EV (kfd_events.c).

* Event id 0 is reserved at process creation; signal (and debug) events take the lowest free id
  in [1, signal_mapped_size/8) and use it as their slot index in the signal page; other events
  take ids from KFD_FIRST_NONSIGNAL_EVENT_ID (0x40000000) up.
* The signal page holds one u64 mailbox slot per signal event, UNSIGNALED = all ones. It is
  either a GTT BO whose handle the first CREATE_EVENT passes in event_page_offset (dGPU way;
  signal_mapped_size = the BO's size) or a page the kernel allocates itself and userspace mmaps
  from /dev/kfd at KFD_MMAP_TYPE_EVENTS (APU way; 256 slots usable until it is mmapped, then as
  many as the mapping covers).
* set_event: `signaled = !auto_reset || no waiter`; every waiter is activated; the event age
  (1.14 `last_event_age`) increments. A waiter of an auto-reset event consumes the signal.
* A GPU interrupt with a context id signals the event whose slot the GPU wrote (the slot is then
  acknowledged back to UNSIGNALED); when that slot is unsignaled the kernel scans every slot.
"""
from __future__ import annotations

import ctypes

import numpy as np

from kfdtrace.abi import ioctl as abi
from kfdtrace.emu.memory import Backing

UNSIGNALED = abi.UNSIGNALED_EVENT_SLOT
SIGNAL_LIMIT = abi.KFD_SIGNAL_EVENT_LIMIT            # 4096 slots
SIGNAL_PAGE_SIZE = SIGNAL_LIMIT * 8                  # 32 KiB
FIRST_NONSIGNAL = abi.KFD_FIRST_NONSIGNAL_EVENT_ID
LAST_NONSIGNAL = 0x7FFFFFFF
SIGNAL_TYPES = (abi.EventType.SIGNAL, abi.EventType.DEBUG_EVENT)

EINVAL, ENOSPC, EBUSY, ENOMEM = 22, 28, 16, 12


class Event:
    __slots__ = ("id", "type", "auto_reset", "signaled", "waiters", "age", "memory_exception",
                 "hw_exception", "signal_count")

    def __init__(self, eid: int, etype: int, auto_reset: bool):
        self.id, self.type, self.auto_reset = eid, etype, auto_reset
        self.signaled = False
        self.waiters: list[Waiter] = []
        self.age = 1
        self.memory_exception: abi.kfd_hsa_memory_exception_data | None = None
        self.hw_exception: abi.kfd_hsa_hw_exception_data | None = None
        self.signal_count = 0          # how many times it was set (for the log and tests)

    @property
    def is_signal(self) -> bool:
        return self.type in SIGNAL_TYPES


class Waiter:
    __slots__ = ("event", "activated", "age_enabled")

    def __init__(self, event: Event):
        self.event: Event | None = event
        self.activated = False
        self.age_enabled = False


class EventTable:
    """The process's events and signal page."""

    def __init__(self):
        self.events: dict[int, Event] = {}
        self.page: np.ndarray | None = None      # uint64 slots
        self.page_backing: Backing | None = None  # the memfd behind the page (for mmap)
        self.page_own: Backing | None = None      # APU way: a page this model allocated
        self.page_handle = 0                      # dGPU way: the BO handle (free -> EPERM)
        self.mapped_size = 0
        self.signal_count = 1                     # id 0 is reserved and counted (K-EV)

    # -- the signal page --------------------------------------------------------------------
    def set_page_bo(self, backing: Backing, size: int, handle: int) -> int:
        """kfd_event_page_set: adopt a user BO as the signal page."""
        if self.page is not None:
            return EBUSY
        if size < SIGNAL_PAGE_SIZE:
            return EINVAL
        self.page = backing.array[:SIGNAL_PAGE_SIZE].view(np.uint64)
        self.page[:] = UNSIGNALED
        self.page_backing, self.page_handle, self.mapped_size = backing, handle, size
        return 0

    def _ensure_page(self) -> None:
        if self.page is None:
            self.page_own = self.page_backing = Backing(SIGNAL_PAGE_SIZE, "events")
            self.page = self.page_own.array.view(np.uint64)
            self.page[:] = UNSIGNALED
            self.mapped_size = 256 * 8     # "oldest user mode expects 256 event slots"

    def mmapped(self, length: int) -> None:
        """kfd_event_mmap succeeded: the mapping's size bounds the usable slots."""
        self.mapped_size = length

    def slot_value(self, eid: int) -> int:
        return int(self.page[eid]) if self.page is not None and 0 <= eid < SIGNAL_LIMIT else UNSIGNALED

    # -- create / destroy / set / reset -------------------------------------------------------
    def create(self, etype: int, auto_reset: bool) -> tuple[int, Event | None]:
        ev = Event(0, etype, auto_reset)
        if etype in SIGNAL_TYPES:
            if self.mapped_size and self.signal_count == self.mapped_size // 8:
                return ENOSPC, None
            self._ensure_page()
            eid = self._lowest_free(1, min(self.mapped_size // 8, SIGNAL_LIMIT))
            if eid is None:
                return ENOSPC, None
            self.page[eid] = UNSIGNALED
            self.signal_count += 1
        else:
            eid = self._lowest_free(FIRST_NONSIGNAL, LAST_NONSIGNAL + 1)
            if eid is None:
                return ENOSPC, None
        ev.id = eid
        self.events[eid] = ev
        return 0, ev

    def _lowest_free(self, lo: int, hi: int) -> int | None:
        for eid in range(lo, hi):
            if eid not in self.events:
                return eid
        return None

    def destroy(self, eid: int) -> int:
        ev = self.events.pop(eid, None)
        if ev is None:
            return EINVAL
        for w in ev.waiters:
            w.event = None          # pending waiters return FAIL
        ev.waiters.clear()
        if ev.is_signal:
            self.signal_count -= 1
        return 0

    def set_event(self, ev: Event) -> None:
        ev.signaled = not ev.auto_reset or not ev.waiters
        ev.age += 1
        if ev.age >= 1 << 64:
            ev.age = 2
        ev.signal_count += 1
        for w in ev.waiters:
            w.activated = True

    def cpu_set(self, eid: int) -> int:
        ev = self.events.get(eid)
        if ev is None or ev.type != abi.EventType.SIGNAL:
            return EINVAL
        self.set_event(ev)
        return 0

    def cpu_reset(self, eid: int) -> int:
        ev = self.events.get(eid)
        if ev is None or ev.type != abi.EventType.SIGNAL:
            return EINVAL
        ev.signaled = False
        return 0

    # -- GPU side -----------------------------------------------------------------------------
    def interrupt(self, ctxid: int, write_mailbox: bool) -> tuple[list[tuple[int, int]], bool]:
        """kfd_signal_event_interrupt for context id `ctxid`. Returns ([(event id, mailbox value
        the GPU wrote)] for the events signaled, whether the slot of `ctxid` had been written).
        With `write_mailbox` an unwritten slot of event `ctxid` is written by the model first
        (lenient mode: the value is the event id, what ROCr's mailbox writes carry)."""
        if self.page is None:
            return [], False
        written = 0 <= ctxid < SIGNAL_LIMIT and int(self.page[ctxid]) != UNSIGNALED
        if not written and write_mailbox and ctxid in self.events and self.events[ctxid].is_signal:
            self.page[ctxid] = ctxid
        fired = []
        ev = self.events.get(ctxid) if 0 <= ctxid < SIGNAL_LIMIT else None
        if ev is not None and int(self.page[ctxid]) != UNSIGNALED:
            fired.append((ctxid, int(self.page[ctxid])))
            self._from_interrupt(ev)
        else:      # partial-id lookup failed: scan every signaled slot, as the kernel does
            for eid in sorted(e for e in self.events if e < SIGNAL_LIMIT):
                if int(self.page[eid]) != UNSIGNALED:
                    fired.append((eid, int(self.page[eid])))
                    self._from_interrupt(self.events[eid])
        return fired, written

    def _from_interrupt(self, ev: Event) -> None:
        if ev.is_signal:
            self.page[ev.id] = UNSIGNALED          # acknowledge_signal
            self.set_event(ev)

    def memory_exception(self, data: abi.kfd_hsa_memory_exception_data) -> list[int]:
        """kfd_signal_vm_fault_event: every MEMORY event gets the fault data and is set."""
        fired = []
        for ev in self.events.values():
            if ev.type == abi.EventType.MEMORY:
                ev.memory_exception = abi.kfd_hsa_memory_exception_data.from_buffer_copy(data)
                self.set_event(ev)
                fired.append(ev.id)
        return fired

    # -- waiting (the loop lives in the KFD model, which runs the GPU meanwhile) ----------------
    def init_waiters(self, datas: ctypes.Array) -> tuple[int, list[Waiter]]:
        waiters = []
        for d in datas:
            ev = self.events.get(d.event_id)
            if ev is None:
                self.free_waiters(waiters)
                return EINVAL, []
            w = Waiter(ev)
            w.activated = ev.signaled
            ev.signaled = ev.signaled and not ev.auto_reset
            if ev.type == abi.EventType.SIGNAL and d.signal_event_data.last_event_age:
                w.age_enabled = True
                if ev.age != d.signal_event_data.last_event_age:
                    w.activated = True
            if not w.activated:
                ev.waiters.append(w)
            waiters.append(w)
        return 0, waiters

    @staticmethod
    def test(waiters: list[Waiter], wait_all: bool) -> int:
        activated = 0
        for w in waiters:
            if w.event is None:
                return abi.WaitResult.FAIL
            if w.activated:
                if not wait_all:
                    return abi.WaitResult.COMPLETE
                activated += 1
        return abi.WaitResult.COMPLETE if activated == len(waiters) else abi.WaitResult.TIMEOUT

    @staticmethod
    def copy_out(waiters: list[Waiter], datas: ctypes.Array) -> int:
        """copy_signaled_event_data: memory-exception or HW-exception data (the kernel copies
        both into the union at offset 0), or the event age when asked for."""
        for w, d in zip(waiters, datas):
            if w.event is None:
                return EINVAL
            if not w.activated:
                continue
            if w.event.type == abi.EventType.MEMORY and w.event.memory_exception is not None:
                d.memory_exception_data = w.event.memory_exception
            elif w.event.type == abi.EventType.HW_EXCEPTION and w.event.hw_exception is not None:
                d.hw_exception_data = w.event.hw_exception
            elif w.event.type == abi.EventType.SIGNAL and w.age_enabled:
                d.signal_event_data.last_event_age = w.event.age
        return 0

    @staticmethod
    def free_waiters(waiters: list[Waiter]) -> None:
        for w in waiters:
            if w.event is not None and w in w.event.waiters:
                w.event.waiters.remove(w)

    def close(self) -> None:
        for eid in list(self.events):
            self.destroy(eid)
        self.page = None
        if self.page_own is not None:
            self.page_own.close()
            self.page_own = None
        self.page_backing = None


__all__ = ["EventTable", "Event", "Waiter", "UNSIGNALED", "SIGNAL_PAGE_SIZE"]
