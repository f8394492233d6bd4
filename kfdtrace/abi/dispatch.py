"""The hardware/firmware dispatch ABI shared by the driver (which programs PM4 dispatches) and the
emulated GPU (whose CP and SPI set up waves): user SGPR order and scratch ring sizing.

Facts: LLVM AMDGPUUsage "Initial Kernel Execution State" — the user SGPRs enabled by
kernel_code_properties are loaded in bit order: private segment buffer (4 SGPRs), dispatch ptr (2),
queue ptr (2), kernarg segment ptr (2), dispatch id (2), flat scratch init (2), private segment
size (1). SPI_TMPRING_SIZE.WAVESIZE is in 1 KiB units on GFX9/GFX10 and 256-byte units on GFX11+
(LLVM's scratch tests: alignto(private_size * lanes, 1024) / 1024 vs alignto(…, 256) / 256).
"""
from __future__ import annotations

#: kernel_code_properties bits that enable user SGPRs: (bit, name, SGPR count)
USER_SGPR_FIELDS = (
    (0, "private_segment_buffer", 4),
    (1, "dispatch_ptr", 2),
    (2, "queue_ptr", 2),
    (3, "kernarg_segment_ptr", 2),
    (4, "dispatch_id", 2),
    (5, "flat_scratch_init", 2),
    (6, "private_segment_size", 1),
)


def user_sgprs(kernel_code_properties: int, *, private_segment_buffer=(0, 0, 0, 0),
               dispatch_ptr: int = 0, queue_ptr: int = 0, kernarg_ptr: int = 0,
               dispatch_id: int = 0, flat_scratch_init: int = 0,
               private_segment_size: int = 0) -> list[int]:
    """The initial user SGPR values, in hardware order, for the features the kernel enables."""
    values = {
        "private_segment_buffer": list(private_segment_buffer),
        "dispatch_ptr": [dispatch_ptr & 0xFFFFFFFF, dispatch_ptr >> 32],
        "queue_ptr": [queue_ptr & 0xFFFFFFFF, queue_ptr >> 32],
        "kernarg_segment_ptr": [kernarg_ptr & 0xFFFFFFFF, kernarg_ptr >> 32],
        "dispatch_id": [dispatch_id & 0xFFFFFFFF, (dispatch_id >> 32) & 0xFFFFFFFF],
        "flat_scratch_init": [flat_scratch_init & 0xFFFFFFFF, flat_scratch_init >> 32],
        "private_segment_size": [private_segment_size],
    }
    out: list[int] = []
    for bit, name, count in USER_SGPR_FIELDS:
        if kernel_code_properties >> bit & 1:
            v = values[name]
            assert len(v) == count
            out += [x & 0xFFFFFFFF for x in v]
    return out


def tmpring_wavesize_units(gfx_major: int) -> int:
    """Bytes per unit of the TMPRING_SIZE.WAVESIZE field."""
    return 256 if gfx_major >= 11 else 1024


def tmpring_size(gfx_major: int, waves: int, private_bytes_per_lane: int, wave_size: int) -> tuple[int, int]:
    """(register value, bytes per wave) for COMPUTE_TMPRING_SIZE: WAVES 11:0, WAVESIZE from 12."""
    unit = tmpring_wavesize_units(gfx_major)
    per_wave = -(-private_bytes_per_lane * wave_size // unit) * unit
    return (waves & 0xFFF) | ((per_wave // unit) << 12), per_wave
