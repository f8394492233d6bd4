"""`kfdtrace disasm CODE.hsaco [--kernel NAME] [--all]`: disassemble AMDGPU machine code.

The disassembler is the emulated GPU's own decoder (kfdtrace/emu/isa: one instruction table for
executing and printing), so what it prints is what the emulator runs. Per instruction: address,
encoding dwords and `mnemonic operands` in LLVM syntax; kernel by kernel (entry code, then the
OpenCL body function an -O0 kernel calls), or the whole .text section with --all. Words outside
the covered instruction set print as `.long`.
"""
from __future__ import annotations

import sys

from kfdtrace.codeobj import CodeObject


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("disasm", help="disassemble an AMDGPU code object",
                              description="Disassemble the kernels of an AMDGPU code object "
                                          "(gfx942, gfx11xx) with the emulator's decoder.")
    p.add_argument("file", help="code object (.hsaco / .co)")
    p.add_argument("--kernel", action="append", metavar="NAME",
                   help="only this kernel (repeatable)")
    p.add_argument("--all", action="store_true",
                   help="the whole .text section, with symbol labels")
    p.set_defaults(func=run)


def run(args) -> int:
    from kfdtrace.emu.isa.disasm import _isa_of, disassemble_kernel, disassemble_text, format_line
    co = CodeObject.load(args.file)
    _isa_of(co)                      # a family without instruction tables: say so up front
    out = sys.stdout
    print(f"{args.file}: {co.target_id}", file=out)
    if args.all:
        labels = {v: n for n, (v, _s, t) in co.symbols.items() if t == "FUNC"}
        for line in disassemble_text(co):
            if line.address in labels:
                print(f"\n{line.address:#x} <{labels[line.address]}>:", file=out)
            print(format_line(line), file=out)
        return 0
    names = args.kernel or list(co.kernels)
    for name in names:
        k = co[name]
        kd = k.descriptor
        print(f"\n{name}: descriptor {k.descriptor_vaddr:#x}, wave{64 if not kd.wave32 else 32}, "
              f"rsrc1 {kd.compute_pgm_rsrc1:#x} rsrc2 {kd.compute_pgm_rsrc2:#x} "
              f"rsrc3 {kd.compute_pgm_rsrc3:#x}, lds {k.group_segment_fixed_size}, "
              f"scratch {k.private_segment_fixed_size}", file=out)
        for label, addr, lines in disassemble_kernel(co, name):
            print(f"{addr:#x} <{label}>:", file=out)
            for line in lines:
                print(format_line(line), file=out)
    return 0
