"""Disassembler parity: for every instruction of every kernel fixture, mnemonic and operands match
what llvm-objdump-22 -d prints (whitespace and comments normalised), and the CLI works."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kfdtrace.cli import main
from kfdtrace.codeobj import CodeObject
from kfdtrace.data import kernel_path
from kfdtrace.emu.isa.disasm import disassemble_kernel, disassemble_text

OBJDUMP = shutil.which("llvm-objdump-22")
FIXTURES = [(t, o) for t in ("gfx942", "gfx1100") for o in ("O0", "O2")]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.split("//")[0]).strip()


def objdump(path) -> dict[int, str]:
    out = subprocess.run([OBJDUMP, "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    res = {}
    for line in out.splitlines():
        m = re.search(r"//\s*([0-9A-Fa-f]+):", line)
        if line.startswith("\t") and m:
            res[int(m.group(1), 16)] = _norm(line)
    return res


@pytest.mark.skipif(OBJDUMP is None, reason="llvm-objdump-22 is not installed: no oracle")
@pytest.mark.parametrize("target,opt", FIXTURES)
def test_matches_llvm_objdump(target, opt):
    path = kernel_path(target, opt)
    ref = objdump(path)
    mine = {line.address: line.text for line in disassemble_text(CodeObject.load(path))}
    assert len(ref) > 500
    bad = [(hex(a), mine.get(a), t) for a, t in ref.items() if _norm(mine.get(a, "")) != t]
    assert not bad, f"{len(bad)} of {len(ref)} differ, e.g. {bad[:5]}"
    assert set(mine) == set(ref)


def test_kernel_listing_covers_body_function():
    co = CodeObject.load(kernel_path("gfx1100", "O0"))
    parts = disassemble_kernel(co, "vector_add")
    assert [p[0] for p in parts] == ["vector_add", "__clang_ocl_kern_imp_vector_add"]
    entry = [line.text for line in parts[0][2]]
    assert entry[0] == "s_mov_b32 s33, 0" and "s_swappc_b64 s[30:31], s[0:1]" in entry
    assert all(line.inst is not None for _l, _a, lines in parts for line in lines)


def test_cli(capsys):
    assert main(["disasm", str(kernel_path("gfx942", "O2")), "--kernel", "saxpy"]) == 0
    out = capsys.readouterr().out
    assert "saxpy: descriptor" in out and "wave64" in out
    assert re.search(r"0x[0-9a-f]+\s+dc708000 007f0\w+\s+global_store_dword v\[\d+:\d+\], v\d+, off",
                     out)
    assert "vector_add" not in out
    assert main(["disasm", str(kernel_path("gfx1201", "O2"))]) == 2
    assert "no instruction tables for gfx1201" in capsys.readouterr().err
