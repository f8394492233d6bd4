"""Robustness: arbitrary bytes decode to an instruction or a DecodeError (never another
exception), and arbitrary code makes the executor finish or raise GpuFault / GpuPageFault —
never a Python traceback."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from kfdtrace.emu.base import DispatchInfo, GpuPageFault
from kfdtrace.emu.isa.decode import Decoder, DecodeError
from kfdtrace.emu.isa.disasm import inst_text
from kfdtrace.emu.isa.executor import NumpyShaderExecutor
from kfdtrace.emu.isa.launch import ArrayMemory
from kfdtrace.errors import GpuFault

CODE, DATA = 0x1_0000_0000, 0x2_0000_0000
ENDPGM = {"gfx9": 0xBF810000, "gfx11": 0xBFB00000}
words = st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["gfx9", "gfx11"]), st.booleans(), st.binary(min_size=4, max_size=16))
def test_decode_never_crashes(isa, wave64, data):
    try:
        inst = Decoder(isa, wave64).decode(data, 0x1000)
    except DecodeError:
        return
    assert 4 <= inst.size <= 12 and inst_text(inst)


def _prefixed(isa, ws):
    """Bias random words toward real encodings: keep the format bits of common encodings."""
    heads = [0x7E000000, 0x02000000, 0x7C000000, 0xBE800000, 0x80000000, 0xBF000000,
             0xD8000000, 0xDC000000, 0xD4000000 if isa == "gfx11" else 0xD0000000,
             0xF4000000 if isa == "gfx11" else 0xC0000000]
    return [(heads[w % len(heads)] | (w & 0x00FFFFFF)) if i % 2 == 0 else w
            for i, w in enumerate(ws)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["gfx9", "gfx11"]), words)
def test_random_code_only_raises_gpu_faults(isa, ws):
    prog = _prefixed(isa, ws) + [ENDPGM[isa]] * 4
    mem = ArrayMemory()
    mem.map(CODE, np.array(prog, np.uint32).view(np.uint8).copy())
    mem.map(DATA, 1 << 16)
    info = DispatchInfo(family="gfx942" if isa == "gfx9" else "gfx1100", code_address=CODE,
                        rsrc1=3, rsrc2=(2 << 1) | (1 << 7) | 1, rsrc3=3,
                        kernel_code_properties=0, grid_workgroups=(2, 1, 1),
                        workgroup_size=(64, 1, 1), grid_size=(100, 1, 1),
                        user_sgprs=[DATA & 0xFFFFFFFF, DATA >> 32], wave32=isa == "gfx11",
                        lds_size=1024, scratch_size=16, kernel_name="fuzz")
    try:
        NumpyShaderExecutor(max_steps=2000).dispatch(info, mem)
    except GpuPageFault:
        pass
    except GpuFault as e:                 # a diagnosis, not an emulator bug turned into a fault
        assert "internal error" not in str(e), str(e)
