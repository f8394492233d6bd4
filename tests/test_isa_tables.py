"""The instruction table against the oracle: for every row of tables.py (both ISAs, every
encoding it lists, VOP3 forms included) a canonical encoding is built, decoded and printed by our
disassembler, and compared with what llvm-mc-22 -disassemble prints for the same bytes."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kfdtrace.emu.isa.decode import Decoder
from kfdtrace.emu.isa.disasm import inst_text
from kfdtrace.emu.isa.tables import TABLES, TYPES, VOP3_OFFSETS, VOPD_OPS, coverage

MC = shutil.which("llvm-mc-22")
CPU = {"gfx9": "gfx942", "gfx11": "gfx1100"}


def _w(typ):
    return 2 if TYPES.get(typ, (4,))[0] == 8 else 1


def encodings(isa: str):
    """(label, bytes) canonical instances of every table entry."""
    g11 = isa == "gfx11"
    out = []

    def add(label, *words):
        out.append((label, b"".join((w & 0xFFFFFFFF).to_bytes(4, "little") for w in words)))

    for fmt, tab in TABLES[isa].items():
        for opc, op in tab.items():
            k, lab = op.kind, f"{fmt}:{op.name}"
            if fmt == "SOP2":
                add(lab, 0x80000000 | opc << 23 | 4 << 16 | 8 << 8 | 6)
            elif fmt == "SOP1":
                if k == "getpc":
                    add(lab, 0xBE800000 | 4 << 16 | opc << 8)
                elif k == "setpc":
                    add(lab, 0xBE800000 | opc << 8 | 6)
                elif k == "sendmsg_rtn":
                    add(lab, 0xBE800000 | 4 << 16 | opc << 8 | 128)
                else:
                    add(lab, 0xBE800000 | 4 << 16 | opc << 8 | 6)
            elif fmt == "SOPC":
                add(lab, 0xBF000000 | opc << 16 | 8 << 8 | 6)
            elif fmt == "SOPK":
                d = {"waitk": 124, "call": 4}.get(k, 4)
                add(lab, 0xB0000000 | opc << 23 | d << 16 | (0 if k == "waitk" else 0x10))
            elif fmt == "SOPP":
                imm = {"waitcnt": 0, "dec": 5, "hex": 1, "sendmsg": 1, "delay_alu": 0x91,
                       "depctr": 0x0F9F}.get(op.types, 0)
                if k in ("branch", "cbranch"):
                    imm = 4
                add(lab, 0xBF800000 | opc << 16 | imm)
            elif fmt == "SMEM":
                if k != "sload":
                    add(lab, (0xF4000000 if g11 else 0xC0000000) | opc << 18, 0)
                elif g11:
                    add(lab, 0xF4000000 | opc << 18 | 16 << 6 | 1, 0x7C << 25 | 0x10)
                else:
                    add(lab, 0xC0000000 | opc << 18 | 1 << 17 | 16 << 6 | 1, 0x10)
            elif fmt in ("VOP2", "VOP1", "VOPC"):
                t = op.srcs
                if fmt == "VOP2":
                    src0, v1 = 0x100 + 2, 6
                    word = opc << 25 | 4 << 17 | v1 << 9 | src0
                    lit = [0x41200000] if k in ("mk", "ak") else []
                    add(lab, word, *lit)
                elif fmt == "VOP1":
                    if k == "accmov":
                        continue
                    src = 0x102
                    add(lab, 0x7E000000 | (4 << 17 if k != "vnop" else 0) | opc << 9 |
                        (src if k != "vnop" else 0))
                else:
                    add(lab, 0x7C000000 | opc << 17 | 6 << 9 | 0x102)
            elif fmt == "VOP3":
                base = 0xD4000000 if g11 else 0xD0000000
                srcs = [0x102, 0x106, 0x10A]
                nsrc = len(op.srcs)
                if k in ("cnd", "cico"):
                    nsrc, srcs[2] = 3, 10        # lane mask in s10 / s[10:11]
                if k == "mac":
                    nsrc = 2
                if k == "rl":
                    srcs[1] = 6
                if k == "wl":
                    srcs[:2] = [6, 8]
                vd = 4
                sd = 0
                if k in ("co", "cico", "mad64"):
                    sd = 10
                if k in ("cmp", "cmpx"):
                    vd = 10 if (k == "cmp" or not g11) else 126
                w1 = sum(s << (9 * j) for j, s in enumerate(srcs[:nsrc]))
                add(lab, base | opc << 16 | sd << 8 | vd, w1)
            elif fmt == "VOP3P":
                w0 = (0xCC000000 if g11 else 0xD3800000) | opc << 16 | 1 << 14 | 4
                add(lab, w0, 3 << 27 | 0x102)
            elif fmt == "DS":
                what = op.sem[0]
                vdst, addr, d0, d1 = 8, 2, 4, 6
                if what == "load" or what == "load2":
                    d0 = d1 = 0
                elif what == "store":
                    vdst, d1 = 0, 0
                elif what == "store2":
                    vdst = 0
                elif what == "atomic":
                    d1 = 0
                    vdst = vdst if op.sem[3] else 0
                else:
                    d1 = 0
                w0 = 0xD8000000 | (opc << 18 if g11 else opc << 17) | 0x10
                add(lab, w0, vdst << 24 | d1 << 16 | d0 << 8 | addr)
            elif fmt == "FLAT":
                what = op.sem[0]
                for seg, segbits in (("f", 0), ("s", 1), ("g", 2)):
                    if seg not in op.segs:
                        continue
                    w0 = 0xDC000000 | opc << 18 | ((segbits << 16) if g11 else (segbits << 14))
                    off_ = 0x7C if g11 else 0x7F
                    saddr = 0 if seg == "f" and not g11 else (33 if seg == "s" else off_)
                    if seg == "f" and g11:
                        saddr = 0x7C
                    addr = 0 if seg == "s" else 2
                    vdst = 8 if what == "load" else 0
                    data = 0 if what == "load" else 4
                    add(f"{lab}:{seg}", w0, vdst << 24 | saddr << 16 | data << 8 | addr)
            elif fmt == "MUBUF":
                add(lab, 0xE0000000 | (opc << 18), 0)
    if g11:
        for ox, (nx, kx, _s) in VOPD_OPS.items():
            if ox > 13:
                continue
            oy = 16
            lit = [0x41200000] if kx in ("mk", "ak") else []
            v1x = 0 if nx == "v_dual_mov_b32" else 3
            add(f"VOPD:{nx}", 0xC8000000 | ox << 22 | oy << 17 | v1x << 9 | 0x102,
                8 << 24 | (3 << 17) | 5 << 9 | 0x10B, *lit)
    return out


def llvm_mc(isa, items):
    lines = "\n".join(" ".join(f"0x{b:02x}" for b in data) for _l, data in items)
    p = subprocess.run([MC, "-arch=amdgcn", f"-mcpu={CPU[isa]}", "-disassemble",
                        "-show-encoding"], input=lines + "\n", capture_output=True, text=True)
    exact, first = {}, {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*(.*?)\s*; encoding: \[(.*)\]", line)
        if m:
            enc = bytes(int(x, 16) for x in m.group(2).split(","))
            text = re.sub(r"\s+", " ", m.group(1)).strip()
            exact.setdefault(enc, text)
            first.setdefault(enc[:4], text)
    # llvm-mc re-encodes what it decoded: an exact match is the item; otherwise (a field it
    # normalises) fall back to the first dword, which holds the opcode
    return {data: exact.get(data, first.get(data[:4])) for _l, data in items}


@pytest.mark.skipif(MC is None, reason="llvm-mc-22 is not installed: no oracle")
@pytest.mark.parametrize("isa", ["gfx9", "gfx11"])
def test_every_row_matches_llvm_mc(isa):
    items = encodings(isa)
    ref = llvm_mc(isa, items)
    dec = Decoder(isa, wave64=isa == "gfx9")
    bad = []
    for label, data in items:
        mine = inst_text(dec.decode(data + b"\0" * 8, 0))
        want = ref.get(data)
        if want != mine:
            bad.append((label, mine, want))
    assert len(items) > 400
    assert not bad, f"{len(bad)} of {len(items)} rows differ from llvm-mc, e.g. {bad[:8]}"


def test_vop3_offsets_and_coverage_counts():
    cov = coverage()
    for isa in ("gfx9", "gfx11"):
        tabs = TABLES[isa]
        for fmt in ("VOP1", "VOP2", "VOPC"):
            for opc, op in tabs[fmt].items():
                e64 = tabs["VOP3"].get(opc + VOP3_OFFSETS[isa][fmt])
                if e64 is not None and e64.e64:
                    assert e64.name == op.name
        assert sum(len(v) for v in cov[isa].values()) > 450


def test_coverage_doc_is_current():
    from pathlib import Path

    from kfdtrace.emu.isa.tables import coverage_markdown
    doc = (Path(__file__).resolve().parents[1] / "docs" / "isa-coverage.md").read_text()
    begin = doc.index("-->\n", doc.index("<!-- BEGIN GENERATED")) + 4
    end = doc.index("<!-- END GENERATED -->")
    assert doc[begin:end] == coverage_markdown(), \
        "docs/isa-coverage.md is stale: regenerate with python -m kfdtrace.emu.isa.tables"
