"""The deterministic scheduler of the emulated GPU.

One `Scheduler` per emulated machine runs every engine (queue) at packet granularity. Real
hardware runs its queues concurrently; the emulator serialises them, and *which* serial order it
picks is the only source of nondeterminism, so it is made explicit:

* ``Scheduler()`` — round robin in creation order, one packet per engine per turn;
* ``Scheduler(seed)`` — at every step a seeded random choice among the engines that may still make
  progress. The same seed and the same sequence of submissions give the same interleaving, so a
  replay that exposed a race can be re-run; another seed gives another interleaving.

An engine that reports IDLE or BLOCKED is not retried until some engine makes progress (a packet
executed can change the memory a blocked engine waits on); when no engine can make progress,
`run()` returns. The scheduler also owns the virtual GPU clock (100 MHz ticks): every executed
packet advances it by `PACKET_TICKS` plus the engine's own estimate of the work it did
(`Engine.busy`: bytes copied, workgroups run), so timestamps written by packets are monotonic and
roughly proportional to work.
"""
from __future__ import annotations

import random
from typing import Callable

from kfdtrace.emu.base import Step
from kfdtrace.emu.engines.core import PACKET_TICKS, BlockedWait, Engine

_RAN = Step.RAN


class Scheduler:
    """Runs engines; see the module docstring. `clock` is the virtual GPU clock in ticks."""

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self.clock = 0                 # virtual GPU clock, 100 MHz ticks (read by ctx.clock())
        self.packets = 0               # packets executed since creation
        self.engines: list[Engine] = []
        self._rng = random.Random(seed) if seed is not None else None
        self._cursor = 0               # round robin: index of the next engine to step
        #: when not None, every executed step appends (queue_id, packet name) — for tests/debug
        self.trace: list | None = None

    # -- membership ------------------------------------------------------------------------------
    def add(self, engine: Engine) -> Engine:
        """Schedule `engine` (after every engine added before it)."""
        if engine not in self.engines:
            self.engines.append(engine)
        return engine

    def remove(self, engine: Engine) -> None:
        """Stop scheduling `engine` (queue destroyed). Unknown engines are ignored."""
        try:
            i = self.engines.index(engine)
        except ValueError:
            return
        del self.engines[i]
        if i < self._cursor:
            self._cursor -= 1

    # -- running ---------------------------------------------------------------------------------
    def run(self, until: Callable[[], bool] | None = None, max_steps: int | None = None) -> bool:
        """Execute packets until `until()` holds (→ True), or no engine can make progress, or
        `max_steps` packets have been executed (→ False). `until` is checked before the first
        step and after every executed packet."""
        if until is not None and until():
            return True
        if not self.engines:
            return False
        if self._rng is None:
            return self._run_round_robin(until, max_steps)
        return self._run_seeded(until, max_steps)

    def _ran(self, engine: Engine) -> None:
        self.clock += PACKET_TICKS + engine.busy
        engine.busy = 0
        self.packets += 1
        if self.trace is not None:
            self.trace.append((engine.queue_id, engine.last_packet))

    def _run_round_robin(self, until, max_steps) -> bool:
        engines = self.engines
        i = self._cursor
        stalled = 0        # consecutive steps without progress
        steps = 0
        try:
            while True:
                n = len(engines)   # re-read: a fault handler may remove engines mid-run
                if stalled >= n:
                    return False
                if i >= n:
                    i = 0
                engine = engines[i]
                i += 1
                if engine.step() is _RAN:
                    self._ran(engine)
                    stalled = 0
                    steps += 1
                    if until is not None and until():
                        return True
                    if max_steps is not None and steps >= max_steps:
                        return False
                else:
                    stalled += 1
        finally:
            self._cursor = i

    def _run_seeded(self, until, max_steps) -> bool:
        rng = self._rng
        candidates = list(self.engines)
        steps = 0
        while candidates:
            engine = candidates[rng.randrange(len(candidates))]
            if engine.step() is _RAN:
                self._ran(engine)
                steps += 1
                if until is not None and until():
                    return True
                if max_steps is not None and steps >= max_steps:
                    return False
                if len(candidates) != len(self.engines):
                    candidates = list(self.engines)   # progress: everyone may run again
            else:
                candidates.remove(engine)
        return False

    # -- reporting -------------------------------------------------------------------------------
    def blocked(self) -> list[BlockedWait]:
        """What every blocked engine waits for — for hang reports (`str()` of each is a line)."""
        out = []
        for engine in self.engines:
            w = engine.blocked_on()
            if w is not None:
                out.append(w)
        return out

    def describe_blocked(self) -> str:
        """All blocked waits, one per line ('' when nothing is blocked)."""
        return "\n".join(str(w) for w in self.blocked())
