"""The engines of the emulated GPU and the scheduler that runs them.

`make_engine(ctx)` builds the engine for a queue (`kfdtrace.emu.base.QueueContext`) by its kind:
the SDMA engine (sdma.py), the PM4 command processor (pm4.py) or the AQL packet processor
(aql.py). The KFD model adds every engine to its machine's `Scheduler` (scheduler.py), which
executes packets one at a time in a deterministic order. Shared pieces (ring and IB handling,
compare functions, TC atomics, the clock model) live in core.py.
"""
from __future__ import annotations

from kfdtrace.emu.base import QueueKind
from kfdtrace.emu.engines.aql import AqlEngine
from kfdtrace.emu.engines.core import BlockedWait, Engine
from kfdtrace.emu.engines.pm4 import Pm4Engine
from kfdtrace.emu.engines.scheduler import Scheduler
from kfdtrace.emu.engines.sdma import SdmaEngine
from kfdtrace.errors import GpuFault

ENGINES = {QueueKind.SDMA: SdmaEngine, QueueKind.PM4: Pm4Engine, QueueKind.AQL: AqlEngine}


def make_engine(ctx) -> Engine:
    """The engine for `ctx.kind` (a QueueKind). Nothing is read from memory until its first step."""
    cls = ENGINES.get(ctx.kind)
    if cls is None:
        raise GpuFault(f"queue {ctx.queue_id}: no engine for queue kind {ctx.kind!r}")
    return cls(ctx)


__all__ = ["make_engine", "Scheduler", "Engine", "BlockedWait", "SdmaEngine", "Pm4Engine",
           "AqlEngine", "ENGINES"]
