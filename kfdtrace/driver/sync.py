"""Timeline semaphores: a 64-bit value that queues signal and wait on, and the CPU waits on.

Memory layout is an `amd_signal_t` (§5: kind @0, value @8, event_mailbox_ptr @16, event_id @24),
so the same object serves PM4, SDMA and AQL engines. GPU signals write the value, then the event
id into the KFD event's mailbox slot and raise an interrupt carrying the event id; a CPU wait
sleeps in AMDKFD_IOC_WAIT_EVENTS on that event, so it never spins and never hangs: every wait has
a timeout whose error names the queue, the address and the value.
"""
from __future__ import annotations

import struct
import time

import numpy as np

from kfdtrace.errors import WaitTimeout

AMD_SIGNAL_KIND_USER = 1


class Timeline:
    def __init__(self, device, initial: int = 0):
        self.device = device
        proc = device.proc
        self.event_id, self.mailbox = proc.create_event(device, auto_reset=True)
        device.events.append(self.event_id)
        proc.event_page.map_to(device)
        self.buffer, self.offset = device._signal_slot()
        self.address = self.buffer.address + self.offset         # the hsa_signal_t handle
        self.value_addr = self.address + 8
        struct.pack_into("<qqQI", memoryview(self.buffer.view(np.uint8, 64, self.offset)), 0,
                         AMD_SIGNAL_KIND_USER, initial, self.mailbox, self.event_id)
        self._value = self.buffer.view(np.uint64, 1, self.offset + 8)
        self.pending: list[tuple[str, int]] = []      # (queue name, value) signals submitted
        self.name = f"timeline@{self.address:#x}"

    def __repr__(self):
        return f"<Timeline {self.address:#x} value={self.value} event={self.event_id}>"

    @property
    def value(self) -> int:
        return int(self._value[0])

    def _signalled_by(self, queue, value: int) -> None:
        self.pending.append((queue, value))
        self.device.port.annotate("signal", timeline=self.address, value=value, queue=queue.queue_id,
                                  gpu_id=queue.device.gpu_id, engine=queue.kind)

    def signal(self, value: int) -> None:
        """Signal from the CPU: store the value and wake waiters (SET_EVENT)."""
        self._value[0] = value
        self.device.port.annotate("signal", timeline=self.address, value=value, queue=None,
                                  gpu_id=None, engine="cpu")
        self.device.proc.ioctl("SET_EVENT", event_id=self.event_id)

    def wait(self, value: int, timeout: float = 10.0) -> int:
        """Block until the timeline reaches `value`; returns the value seen. Raises WaitTimeout
        naming the queues expected to signal it, the address and the value."""
        proc = self.device.proc
        deadline = time.monotonic() + timeout
        seen = self.value
        while seen < value:
            left = deadline - time.monotonic()
            if left <= 0:
                self.device.port.annotate("wait", timeline=self.address, value=value, result="timeout",
                                          value_seen=seen, timeout=timeout)
                raise WaitTimeout(self._timeout_message(value, seen, timeout))
            devs = [d for d in proc.devices if not d.closed]
            ids = [self.event_id] + [e for d in devs for e in (d.fault_event, d.hw_event)]
            result, data = proc.wait_events(ids, max(1, min(int(left * 1000), 1000)))
            for i, dev in enumerate(devs):
                mem, hw = data[1 + 2 * i], data[2 + 2 * i]
                m = mem.memory_exception_data
                if m.va or m.failure.NotPresent or m.failure.ReadOnly or hw.hw_exception_data.gpu_id:
                    self.device.port.annotate("wait", timeline=self.address, value=value,
                                              result="fault", value_seen=self.value, timeout=timeout)
                    dev.check_fault(mem, hw)
            seen = self.value
        self.device.port.annotate("wait", timeline=self.address, value=value, result="ok",
                                  value_seen=seen, timeout=timeout)
        return seen

    def _timeout_message(self, value: int, seen: int, timeout: float) -> str:
        msg = (f"timed out after {timeout:g}s waiting for {self.name} (value at {self.value_addr:#x}) "
               f">= {value}; last value seen {seen}")
        signallers = [(q, v) for q, v in self.pending if v >= value]
        if not signallers:
            return msg + "; no queue was asked to signal that value"
        stalls = []
        for q, v in signallers:
            if not q.destroyed:
                stalls.append(f"{q.describe_stall()} (it signals {v})")
        return msg + "; " + "; ".join(stalls)

    def destroy(self) -> None:
        if self.event_id in self.device.events:
            self.device.proc.ioctl("DESTROY_EVENT", event_id=self.event_id)
            self.device.events.remove(self.event_id)


__all__ = ["Timeline"]
