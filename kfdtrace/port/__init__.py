"""Backend selection and the process-wide recording hook.

`open_port(backend)` returns the port a driver should use:

* ``"kfd"``  — the host port (real /dev/kfd); fails with a clear message when there is none;
* ``"emu"``  — the emulated GPU (`kfdtrace.emu`), configured by `gpu`/`gpus`/`vram` or the
  environment (KFDTRACE_EMU_GPU, KFDTRACE_EMU_GPUS, KFDTRACE_EMU_VRAM, KFDTRACE_EMU_SEED);
* ``"auto"`` — host if /dev/kfd opens, else emulated; says which on stderr (once).

The backend defaults to `KFDTRACE_BACKEND` or ``"auto"``. When `kfdtrace record` is running, the
port returned is wrapped by the recording port (see `set_port_wrapper`).
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from kfdtrace.errors import PortError
from kfdtrace.port.base import Port

BACKENDS = ("auto", "kfd", "emu")

_wrapper: Callable[[Port], Port] | None = None
_recorder = None
_said_auto = False


def set_port_wrapper(wrapper: Callable[[Port], Port] | None, recorder=None) -> None:
    """Install (or remove) a function that wraps every port opened from now on (the recorder)."""
    global _wrapper, _recorder
    _wrapper = wrapper
    _recorder = recorder


def current_recorder():
    """The active recorder, if `kfdtrace record` is running this process."""
    return _recorder


def resolve_backend(backend: str | None) -> str:
    backend = (backend or os.environ.get("KFDTRACE_BACKEND") or "auto").lower()
    if backend not in BACKENDS:
        raise PortError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} "
                        "(from the API, --backend or KFDTRACE_BACKEND)")
    return backend


def emu_config_from_env(gpu: str | None = None, gpus: int | None = None,
                        vram: int | None = None, seed: int | None = None) -> dict:
    """The emulated GPU's configuration: explicit arguments win over the environment."""
    env = os.environ

    def number(value, name: str, default):
        if value is not None:
            return value
        text = env.get(name)
        if not text:
            return default
        for base in (10, 0):                # decimal as before; 0x... too
            try:
                return int(text, base)
            except ValueError:
                pass
        raise PortError(f"{name}={text!r} is not a number")

    return {
        "gpu": gpu or env.get("KFDTRACE_EMU_GPU") or "gfx942",
        "gpus": number(gpus, "KFDTRACE_EMU_GPUS", 1),
        "vram": number(vram, "KFDTRACE_EMU_VRAM", 4 << 30),
        "seed": number(seed, "KFDTRACE_EMU_SEED", None),
    }


def open_port(backend: str | None = None, *, gpu: str | None = None, gpus: int | None = None,
              vram: int | None = None, seed: int | None = None, wrap: bool = True) -> Port:
    """Open the port for `backend` (see module doc). `wrap=False` skips the recording wrapper."""
    global _said_auto
    backend = resolve_backend(backend)
    port: Port
    if backend in ("kfd", "auto"):
        from kfdtrace.port.host import HostPort, host_kfd_available

        if backend == "kfd" or host_kfd_available():
            port = HostPort()
        else:
            backend = "emu"
            if not _said_auto:
                print("kfdtrace: no usable /dev/kfd on this machine; using the emulated GPU "
                      "(--backend emu)", file=sys.stderr)
                _said_auto = True
    if backend == "emu":
        from kfdtrace.emu import EmulatedPort

        port = EmulatedPort(**emu_config_from_env(gpu, gpus, vram, seed))
    if wrap and _wrapper is not None:
        port = _wrapper(port)
    return port


__all__ = ["Port", "open_port", "resolve_backend", "set_port_wrapper", "current_recorder",
           "emu_config_from_env", "BACKENDS"]
