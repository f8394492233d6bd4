"""COMPUTE_* SH register names per family (reference §3.4, from the asic_reg offset headers).

Registers are named by their absolute dword address (IP base + offset). Most COMPUTE_* registers
share one absolute address on GFX9…GFX12; the exceptions are below (COMPUTE_PGM_RSRC3 is 0x2E2D on
GFX9/CDNA but 0x2E28 on GFX10+). SET_SH_REG carries ``address - SH_BASE``; MMIO byte address =
address × 4.
"""
from __future__ import annotations

from kfdtrace.errors import PacketError
from kfdtrace.packets.table import gfx_key

CONFIG_BASE = 0x2000     # SET_CONFIG_REG range 0x2000–0x2C00
SH_BASE = 0x2C00         # SET_SH_REG range 0x2C00–0x3000
CONTEXT_BASE = 0xA000    # SET_CONTEXT_REG range 0xA000–0xA400
UCONFIG_BASE = 0xC000    # SET_UCONFIG_REG range 0xC000–0xC400

COMMON: dict[int, str] = {
    0x2E00: "COMPUTE_DISPATCH_INITIATOR",
    0x2E01: "COMPUTE_DIM_X", 0x2E02: "COMPUTE_DIM_Y", 0x2E03: "COMPUTE_DIM_Z",
    0x2E04: "COMPUTE_START_X", 0x2E05: "COMPUTE_START_Y", 0x2E06: "COMPUTE_START_Z",
    0x2E07: "COMPUTE_NUM_THREAD_X", 0x2E08: "COMPUTE_NUM_THREAD_Y", 0x2E09: "COMPUTE_NUM_THREAD_Z",
    0x2E0A: "COMPUTE_PIPELINESTAT_ENABLE", 0x2E0B: "COMPUTE_PERFCOUNT_ENABLE",
    0x2E0C: "COMPUTE_PGM_LO", 0x2E0D: "COMPUTE_PGM_HI",
    0x2E0E: "COMPUTE_DISPATCH_PKT_ADDR_LO", 0x2E0F: "COMPUTE_DISPATCH_PKT_ADDR_HI",
    0x2E10: "COMPUTE_DISPATCH_SCRATCH_BASE_LO", 0x2E11: "COMPUTE_DISPATCH_SCRATCH_BASE_HI",
    0x2E12: "COMPUTE_PGM_RSRC1", 0x2E13: "COMPUTE_PGM_RSRC2",
    0x2E14: "COMPUTE_VMID", 0x2E15: "COMPUTE_RESOURCE_LIMITS",
    0x2E16: "COMPUTE_STATIC_THREAD_MGMT_SE0", 0x2E17: "COMPUTE_STATIC_THREAD_MGMT_SE1",
    0x2E18: "COMPUTE_TMPRING_SIZE",
    0x2E19: "COMPUTE_STATIC_THREAD_MGMT_SE2", 0x2E1A: "COMPUTE_STATIC_THREAD_MGMT_SE3",
    0x2E1B: "COMPUTE_RESTART_X", 0x2E1E: "COMPUTE_THREAD_TRACE_ENABLE",
    0x2E20: "COMPUTE_DISPATCH_ID", 0x2E21: "COMPUTE_THREADGROUP_ID",
    **{0x2E40 + i: f"COMPUTE_USER_DATA_{i}" for i in range(16)},
    0x2E7E: "COMPUTE_DISPATCH_END", 0x2E7F: "COMPUTE_NOWHERE",
}
#: registers whose address (or existence) depends on the generation
GFX9: dict[int, str] = {0x2E2C: "COMPUTE_SHADER_CHKSUM", 0x2E2D: "COMPUTE_PGM_RSRC3"}
GFX10: dict[int, str] = {0x2E22: "COMPUTE_REQ_CTRL", 0x2E28: "COMPUTE_PGM_RSRC3",
                         0x2E2A: "COMPUTE_SHADER_CHKSUM", 0x2E2F: "COMPUTE_DISPATCH_INTERLEAVE",
                         0x2E7D: "COMPUTE_DISPATCH_TUNNEL"}

#: variant key (gfx major, or None for "any family") -> {address: name}
REGISTERS: dict[int | None, dict[int, str]] = {
    None: dict(COMMON), 9: {**COMMON, **GFX9},
    10: {**COMMON, **GFX10}, 11: {**COMMON, **GFX10}, 12: {**COMMON, **GFX10},
}
_BY_NAME: dict[int | None, dict[str, int]] = {k: {n: a for a, n in t.items()} for k, t in REGISTERS.items()}
_FAMILY_SPECIFIC = set(GFX9.values()) | set(GFX10.values())


def _table(family) -> int | None:
    k = gfx_key(family)
    if k not in REGISTERS:
        raise PacketError(f"no register table for gfx major {k}")
    return k


def reg_name(addr: int, family=None) -> str | None:
    """The register at absolute dword address ``addr`` on ``family`` (None: only registers whose
    address is the same on every family), or None if not a known COMPUTE_* register."""
    return REGISTERS[_table(family)].get(addr)


def reg_addr(name: str, family=None) -> int:
    """Absolute dword address of register ``name`` (case-insensitive) on ``family``."""
    key = _table(family)
    n = name.upper()
    try:
        return _BY_NAME[key][n]
    except KeyError:
        pass
    if key is None and n in _FAMILY_SPECIFIC:
        raise PacketError(f"register {n} has a different address per family (e.g. COMPUTE_PGM_RSRC3 "
                          f"0x2E2D on GFX9, 0x2E28 on GFX10+); pass a family")
    raise PacketError(f"unknown register {name!r}"
                      f"{'' if key is None else f' on gfx{key}'}; known: COMPUTE_* (§3.4)")


def sh_offset(name_or_addr, family=None) -> int:
    """The SET_SH_REG offset (address − SH_BASE) of a register name or absolute address."""
    addr = reg_addr(name_or_addr, family) if isinstance(name_or_addr, str) else int(name_or_addr)
    return addr - SH_BASE
