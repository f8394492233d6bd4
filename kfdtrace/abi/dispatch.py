"""The hardware/firmware dispatch ABI shared by the driver (which programs PM4 dispatches) and the
emulated GPU (whose CP and SPI set up waves): user SGPR order and scratch ring sizing.

Facts: LLVM AMDGPUUsage "Initial Kernel Execution State" — the user SGPRs enabled by
kernel_code_properties are loaded in bit order: private segment buffer (4 SGPRs), dispatch ptr (2),
queue ptr (2), kernarg segment ptr (2), dispatch id (2), flat scratch init (2), private segment
size (1). SPI_TMPRING_SIZE.WAVESIZE is in 1 KiB units on GFX9/GFX10 and 256-byte units on GFX11+
(LLVM's scratch tests: alignto(private_size * lanes, 1024) / 1024 vs alignto(…, 256) / 256).
"""
from __future__ import annotations

def user_sgprs(kernel_code_properties: int, rsrc2: int, *, private_segment_buffer=None,
               dispatch_ptr: int = 0, queue_ptr: int = 0, kernarg_ptr: int = 0,
               dispatch_id: int = 0, flat_scratch_init: int = 0, private_segment_size: int = 0,
               kernarg_preload=()) -> list[int]:
    """The initial user SGPR values (32-bit each), in hardware order, for the features the kernel
    descriptor enables; then padded with zeros to COMPUTE_PGM_RSRC2.USER_SGPR_COUNT (the CP loads
    that many COMPUTE_USER_DATA registers; GFX11 code objects reserve extra so the system SGPRs
    land at a fixed place) and cut to 16. `kernarg_preload` are the preloaded kernarg dwords."""
    kcp = int(kernel_code_properties)
    out: list[int] = []

    def pair(v: int) -> None:
        v = int(v) & 0xFFFFFFFFFFFFFFFF
        out.extend((v & 0xFFFFFFFF, v >> 32))

    if kcp & 1:
        psb = tuple(private_segment_buffer or (0, 0, 0, 0))
        if len(psb) != 4:
            raise ValueError(f"private_segment_buffer needs 4 dwords, got {len(psb)}")
        out.extend(int(v) & 0xFFFFFFFF for v in psb)
    for bit, value in ((1, dispatch_ptr), (2, queue_ptr), (3, kernarg_ptr), (4, dispatch_id),
                       (5, flat_scratch_init)):
        if kcp >> bit & 1:
            pair(value)
    out.extend(int(v) & 0xFFFFFFFF for v in kernarg_preload)
    if kcp >> 6 & 1:
        out.append((int(private_segment_size) + 3) & ~3 & 0xFFFFFFFF)
    count = (int(rsrc2) >> 1) & 0x1F
    out.extend([0] * max(0, count - len(out)))
    return out[:16]


def tmpring_wavesize_units(gfx_major: int) -> int:
    """Bytes per unit of the TMPRING_SIZE.WAVESIZE field."""
    return 256 if gfx_major >= 11 else 1024


def tmpring_size(gfx_major: int, waves: int, private_bytes_per_lane: int, wave_size: int) -> tuple[int, int]:
    """(register value, bytes per wave) for COMPUTE_TMPRING_SIZE: WAVES 11:0, WAVESIZE from 12."""
    unit = tmpring_wavesize_units(gfx_major)
    per_wave = -(-private_bytes_per_lane * wave_size // unit) * unit
    return (waves & 0xFFF) | ((per_wave // unit) << 12), per_wave
