"""PM4, SDMA and AQL packets: one declarative table per engine (``pm4.PACKETS``,
``sdma.PACKETS``, ``aql.PACKETS``) from which builders and decoders are derived
(machinery in ``table``), plus COMPUTE_* register names per family (``registers``).

    from kfdtrace.packets import Packet, pm4, sdma, aql, decode_stream, ENGINES
    pm4.build("RELEASE_MEM", "gfx942", event_type=0x14, event_index=5, data_sel=1, int_sel=2,
              addr=va, data=5, int_ctxid=5)
    for p in decode_stream("pm4", ring_dwords, "gfx942"):
        print(p.offset, p.summary("gfx942"))
"""
from __future__ import annotations

from kfdtrace.errors import PacketError
from kfdtrace.packets import aql, pm4, registers, sdma
from kfdtrace.packets.table import Packet, as_dwords

ENGINES = {"pm4": pm4, "sdma": sdma, "aql": aql}

__all__ = ["Packet", "pm4", "sdma", "aql", "registers", "decode_stream", "ENGINES"]


def decode_stream(engine: str, data, family=None, **kw) -> list[Packet]:
    """Decode a whole stream of one engine. ``data``: dwords (list or numpy array) or bytes.
    Keyword arguments go to the engine's ``decode`` (offset, end, follow, max_depth)."""
    if engine == "aql":
        return aql.decode(data, family=family, **kw)
    mod = ENGINES.get(engine)
    if mod is None:
        raise PacketError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    return mod.decode(as_dwords(data), family, **kw)
