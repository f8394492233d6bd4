"""Options shared by the commands that open a GPU: --backend, --gpu, --gpus, --seed."""
from __future__ import annotations

import argparse
import os

from kfdtrace.port import BACKENDS


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a usage error)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return n


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (seconds)."""
    try:
        x = float(text)
    except ValueError:
        x = 0.0
    if not 0 < x < float("inf"):         # an infinite watchdog would be no watchdog
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return x


def add_backend_options(p: argparse.ArgumentParser, *, seed: bool = False) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="auto (host /dev/kfd if present, else emulated), kfd, or emu "
                        "(default: $KFDTRACE_BACKEND or auto)")
    g.add_argument("--gpu", metavar="GFX", default=None,
                   help="emulated GPU family, e.g. gfx942, gfx1100 (default: $KFDTRACE_EMU_GPU or gfx942)")
    g.add_argument("--gpus", type=positive_int, metavar="N", default=None,
                   help="number of emulated GPUs (default: $KFDTRACE_EMU_GPUS or 1)")
    if seed:
        g.add_argument("--seed", type=int, default=None,
                       help="emulated GPU engine schedule seed (default: the fixed default order)")


def export_backend_env(args) -> None:
    """Make the chosen backend the default for everything this process (or a child) opens."""
    if getattr(args, "backend", None):
        os.environ["KFDTRACE_BACKEND"] = args.backend
    if getattr(args, "gpu", None):
        os.environ["KFDTRACE_EMU_GPU"] = args.gpu
    if getattr(args, "gpus", None):
        os.environ["KFDTRACE_EMU_GPUS"] = str(args.gpus)
    if getattr(args, "seed", None) is not None:
        os.environ["KFDTRACE_EMU_SEED"] = str(args.seed)
