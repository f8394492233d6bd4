"""Shader executor and disassembler for real AMDGPU machine code (gfx942 wave64, gfx11xx wave32).

One instruction table (`tables.py`), two uses: `decode.py` + `disasm.py` print LLVM syntax from
it, `executor.py` runs the same decoded instructions with numpy. `launch.py` holds the dispatch
ABI glue the AQL/PM4 engines use (`aql_user_sgprs`, `default_executor`) and `dispatch_kernel`
for running a code object's kernel directly. Coverage: docs/isa-coverage.md.
"""
from kfdtrace.emu.isa.executor import NumpyShaderExecutor
from kfdtrace.emu.isa.launch import (ArrayMemory, aql_user_sgprs, default_executor, dispatch_info,
                                     dispatch_kernel)

__all__ = ["NumpyShaderExecutor", "ArrayMemory", "aql_user_sgprs", "default_executor",
           "dispatch_info", "dispatch_kernel"]
