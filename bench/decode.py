"""Benchmark the packet layer: boundary scan and full decode of a synthetic mixed stream.

The stream: 1,000,000 packets (half PM4 for gfx942, half SDMA v4), drawn with a fixed seed from
templates that look like what ROCr/the kernel emit (dispatch setup, fences, waits, fillers, copies,
fills, atomics, zero-dword ring padding). Reported: packets/s for
  (a) scan  — pm4.scan + sdma.scan: offset, opcode and length of every packet (numpy-vectorised);
  (b) decode — pm4.decode + sdma.decode: every packet into named fields (Packet objects).
Each figure is the best of ``--repeat`` runs. Prints one JSON object.

    python3 bench/decode.py [--packets N] [--repeat R]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kfdtrace.abi.families import get_family  # noqa: E402
from kfdtrace.packets import pm4, sdma  # noqa: E402

TARGET_SCAN = 5_000_000
TARGET_DECODE = 300_000


def pm4_templates(fam) -> list[list[int]]:
    va = 0x7F3A_1200_0000
    return [
        pm4.build("ACQUIRE_MEM", fam, coher_cntl=0x28C40000, coher_size=0xFFFFFFFFFF, poll_interval=0xA),
        pm4.build("SET_SH_REG", fam, reg="COMPUTE_PGM_LO", values=[(va >> 8) & 0xFFFFFFFF, va >> 40]),
        pm4.build("SET_SH_REG", fam, reg="COMPUTE_PGM_RSRC1", values=[0x00AF0043, 0x0000138C]),
        pm4.build("SET_SH_REG", fam, reg="COMPUTE_USER_DATA_0", values=[0x1000, 0x7F3A, 0x2000, 0x7F3A]),
        pm4.build("DISPATCH_DIRECT", fam, dim_x=256, dim_y=1, dim_z=1, compute_shader_en=1, force_start_at_000=1),
        pm4.build("RELEASE_MEM", fam, event_type=0x14, event_index=5, tc_action_ena=1, tc_wb_action_ena=1,
                  data_sel=1, int_sel=2, addr=va + 0x40, data=7, int_ctxid=7),
        pm4.build("WAIT_REG_MEM", fam, function=3, mem_space=1, poll_addr=va + 0x40, reference=7,
                  mask=0xFFFFFFFF, poll_interval=4),
        pm4.build("WRITE_DATA", fam, dst_sel=5, wr_confirm=1, dst_addr=va + 0x80, data=[1, 2]),
        pm4.build("INDIRECT_BUFFER", fam, ib_addr=va + 0x1000, ib_size=64),
        pm4.build("NOP", count=0x3FFF),
        pm4.build("COPY_DATA", fam, src_sel=9, dst_sel=5, count_sel=1, dst_addr=va + 0x100),
        pm4.build("EVENT_WRITE", fam, event_type=0x07, event_index=4),
    ]


def sdma_templates(fam) -> list[list[int]]:
    va = 0x7F3A_4000_0000
    return [
        sdma.build("COPY_LINEAR", fam, count=1 << 20, src_addr=va, dst_addr=va + (1 << 24)),
        sdma.build("FENCE", fam, addr=va + 0x40, data=11),
        sdma.build("TRAP", fam, int_context=11),
        sdma.build("POLL_REGMEM", fam, mem_poll=1, func=3, addr=va + 0x40, value=11, mask=0xFFFFFFFF,
                   interval=10, retry_count=0xFFF),
        sdma.build("CONST_FILL", fam, fillsize=2, byte_count=4096, dst_addr=va + 0x8000, src_data=0xDEADBEEF),
        sdma.build("ATOMIC", fam, atomic_op=47, addr=va + 0x80, src_data=(1 << 64) - 1),
        sdma.build("TIMESTAMP_GET_GLOBAL", fam, write_addr=va + 0x100),
        sdma.build("WRITE_UNTILED", fam, dst_addr=va + 0x200, data=[5, 6, 7]),
        [0],                                   # ROCr's zero-dword ring padding: a 1-dword NOP
        sdma.build("NOP", fam, count=3),
        sdma.build("INDIRECT", fam, ib_addr=va + 0x10000, ib_size=32),
    ]


def make_stream(templates: list[list[int]], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    choice = rng.integers(0, len(templates), n)
    flat: list[int] = []
    ext = flat.extend
    for i in choice.tolist():
        ext(templates[i])
    return np.array(flat, dtype=np.uint32), choice


def best(fn, repeat: int) -> tuple[float, object]:
    t_best, res = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        t_best = min(t_best, time.perf_counter() - t0)
    return t_best, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gpu", default="gfx942")
    args = ap.parse_args()
    fam = get_family(args.gpu)
    rng = np.random.default_rng(1234)
    n_pm4 = args.packets // 2
    n_sdma = args.packets - n_pm4
    pm4_t, sdma_t = pm4_templates(fam), sdma_templates(fam)
    pm4_stream, pm4_choice = make_stream(pm4_t, n_pm4, rng)
    sdma_stream, sdma_choice = make_stream(sdma_t, n_sdma, rng)

    # warm the per-family decoder tables (built on first use) outside the timing
    pm4.decode(pm4_stream[:64], fam)
    sdma.decode(sdma_stream[:64], fam)

    t_scan_pm4, (offs_p, ops_p, lens_p) = best(lambda: pm4.scan(pm4_stream), args.repeat)
    t_scan_sdma, (offs_s, ops_s, lens_s) = best(lambda: sdma.scan(sdma_stream, fam), args.repeat)
    t_dec_pm4, pkts_p = best(lambda: pm4.decode(pm4_stream, fam), args.repeat)
    t_dec_sdma, pkts_s = best(lambda: sdma.decode(sdma_stream, fam), args.repeat)

    # the figures only count if the work was right
    exp_len_p = np.array([len(t) for t in pm4_t])[pm4_choice]
    exp_len_s = np.array([len(t) for t in sdma_t])[sdma_choice]
    assert len(offs_p) == n_pm4 and np.array_equal(lens_p, exp_len_p), "PM4 scan disagrees with the stream"
    assert len(offs_s) == n_sdma and np.array_equal(lens_s, exp_len_s), "SDMA scan disagrees with the stream"
    assert len(pkts_p) == n_pm4 and [p.length for p in pkts_p[:1000]] == exp_len_p[:1000].tolist()
    assert len(pkts_s) == n_sdma and [p.length for p in pkts_s[:1000]] == exp_len_s[:1000].tolist()
    assert not any(p.error for p in pkts_p) and not any(p.error for p in pkts_s), "decode reported errors"

    total = n_pm4 + n_sdma
    t_scan = t_scan_pm4 + t_scan_sdma
    t_dec = t_dec_pm4 + t_dec_sdma
    out = {
        "benchmark": "packets.decode",
        "gpu": fam.name,
        "packets": total,
        "pm4_packets": n_pm4, "pm4_dwords": int(len(pm4_stream)),
        "sdma_packets": n_sdma, "sdma_dwords": int(len(sdma_stream)),
        "scan_seconds": round(t_scan, 4),
        "scan_packets_per_s": round(total / t_scan),
        "scan_pm4_packets_per_s": round(n_pm4 / t_scan_pm4),
        "scan_sdma_packets_per_s": round(n_sdma / t_scan_sdma),
        "decode_seconds": round(t_dec, 4),
        "decode_packets_per_s": round(total / t_dec),
        "decode_pm4_packets_per_s": round(n_pm4 / t_dec_pm4),
        "decode_sdma_packets_per_s": round(n_sdma / t_dec_sdma),
        "target_scan_packets_per_s": TARGET_SCAN,
        "target_decode_packets_per_s": TARGET_DECODE,
        "scan_meets_target": total / t_scan >= TARGET_SCAN,
        "decode_meets_target": total / t_dec >= TARGET_DECODE,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
