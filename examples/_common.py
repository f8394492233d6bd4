"""Shared bits of the examples: finding the compiled kernels for a device, and reporting."""
from __future__ import annotations

import sys

from kfdtrace.data import kernel_path
from kfdtrace.errors import KfdtraceError


def load_kernels(dev, opt: str = "O2"):
    """Load the project's test kernels compiled for this device's family."""
    try:
        path = kernel_path(dev.family.name, opt)
    except (KfdtraceError, FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"{sys.argv[0]}: no compiled kernels for {dev.family.name} ({e}); "
                         "run on gfx942, gfx1100 or gfx1201") from None
    return dev.load_program(path)


def report(name: str, ok: bool, detail: str = "") -> int:
    print(f"{name}: {'OK' if ok else 'FAILED'}{': ' + detail if detail else ''}")
    return 0 if ok else 1
