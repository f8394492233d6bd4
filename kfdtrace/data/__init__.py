"""Data shipped with kfdtrace: the real compiled test kernels.

`kernels/` holds OpenCL C sources (one kernel per `<name>.cl`, shared macros in `common.h`,
`kernels.cl` includes them all) and the committed code objects built from them by
`tools/build_kernels.sh` with Debian's clang-22/lld-22: one ET_DYN code object per
(target, optimisation level) holding every kernel, named `kernels-<target>-<opt>.hsaco`.

    from kfdtrace.data import kernel_path
    co = CodeObject.load(kernel_path("gfx1100", "O2"))
    co.kernels["vector_add"]

-O0 kernels call their body function and keep locals in scratch (they need a private segment);
-O2 kernels are straight-line code without scratch. Semantics of each kernel are documented at
the top of its source file.
"""
from __future__ import annotations

from pathlib import Path

from kfdtrace.errors import CodeObjectError

KERNELS_DIR = Path(__file__).resolve().parent / "kernels"
TARGETS = ("gfx942", "gfx1100", "gfx1201")
OPTS = ("O0", "O2")
KERNEL_NAMES = ("vector_add", "saxpy", "fill", "reduce_sum", "matmul", "histogram", "divergent",
                "table_lookup")
#: kernel name -> its OpenCL C source file
KERNEL_SOURCES: dict[str, Path] = {name: KERNELS_DIR / f"{name}.cl" for name in KERNEL_NAMES}


def kernel_path(target: str, opt: str = "O2", name: str | None = None) -> Path:
    """The committed code object for `target` (gfx942, gfx1100, gfx1201) at `opt` (O0, O2).

    Every kernel lives in the same code object, so `name` only checks that the kernel exists.
    """
    if target not in TARGETS:
        raise CodeObjectError(f"no prebuilt kernels for target {target!r}; built for "
                              f"{', '.join(TARGETS)} (tools/build_kernels.sh, TARGETS=...)")
    if opt not in OPTS:
        raise CodeObjectError(f"no prebuilt kernels at optimisation level {opt!r}; built at "
                              f"{', '.join(OPTS)}")
    if name is not None and name not in KERNEL_SOURCES:
        raise CodeObjectError(f"no test kernel {name!r}; kernels: {', '.join(KERNEL_NAMES)}")
    return KERNELS_DIR / f"kernels-{target}-{opt}.hsaco"
