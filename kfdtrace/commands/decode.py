"""`kfdtrace decode`: decode raw PM4, SDMA or AQL packets from a file or stdin.

Input is binary (little-endian dwords; AQL: 64-byte slots) or text with one or more hex dwords
per line (``0x`` optional, commas allowed, ``#`` starts a comment). ``--format auto`` (the
default) treats printable ASCII as hex text and anything else as binary. Output: one packet per
line — offset (dwords for PM4/SDMA, bytes for AQL), name and fields — or JSON lines with
``--json``.

Exit status: 0 every packet decoded, 1 some could not be (unknown or truncated: listed inline
with ``!!`` and summed up on stderr), 2 the input could not be read.

    kfdtrace decode --engine pm4 --gpu gfx942 traces/example.pm4.hex
    xxd -p ring.bin | kfdtrace decode --engine sdma --gpu gfx1100 -
"""
from __future__ import annotations

import json
import re
import sys

from kfdtrace.errors import KfdtraceError
from kfdtrace.packets import ENGINES, aql
from kfdtrace.packets.table import as_dwords, resolve_family


class DecodeInputError(KfdtraceError):
    """Input that cannot be read as packets: unreadable file, bad hex, partial dword."""


_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]{1,8}")
_TEXT = re.compile(rb"[\t\n\r\x20-\x7e]*")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "decode", help="decode raw PM4/SDMA/AQL packets (binary or hex text)",
        description="Decode raw PM4, SDMA or AQL packets from a file or stdin, one packet per line.")
    p.add_argument("input", nargs="?", default="-", metavar="FILE",
                   help="packets: binary dwords or hex text ('-' or absent: stdin)")
    p.add_argument("--engine", required=True, choices=list(ENGINES), help="packet format")
    p.add_argument("--gpu", default=None, metavar="GFX",
                   help="GPU family (gfx942, gfx1100, …; a gfx_target_version works too): selects the "
                        "family's layouts. Without it only fields common to every family are decoded "
                        "(SDMA: v4 packets)")
    p.add_argument("--format", choices=["auto", "bin", "hex"], default="auto",
                   help="input encoding (default: auto-detect)")
    p.add_argument("--json", action="store_true", help="one JSON object per packet")
    p.set_defaults(func=run)


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DecodeInputError(f"cannot read {path}: {e.strerror or e}") from None


def parse_hex(text: str, name: str = "<input>") -> list[int]:
    """Dwords from hex text; errors name the line and the offending token."""
    out: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        for tok in line.replace(",", " ").split():
            if not _HEX.fullmatch(tok):
                raise DecodeInputError(f"{name}, line {lineno}: {tok!r} is not a hex dword "
                                       f"(1-8 hex digits, optional 0x)")
            out.append(int(tok, 16))
    return out


def to_dwords(data: bytes, fmt: str, name: str = "<input>") -> list[int]:
    if fmt == "auto":
        fmt = "hex" if _TEXT.fullmatch(data) else "bin"
    if fmt == "hex":
        try:
            return parse_hex(data.decode("ascii"), name)
        except UnicodeDecodeError:
            raise DecodeInputError(f"{name}: --format hex, but the input is not ASCII text") from None
    if len(data) % 4:
        raise DecodeInputError(f"{name}: {len(data)} bytes is not a whole number of dwords "
                               f"(binary input must be a multiple of 4 bytes)")
    return as_dwords(data)


def run(args) -> int:
    gpu = args.gpu
    family = resolve_family(int(gpu) if gpu and gpu.isdigit() else gpu) if gpu else None
    name = "<stdin>" if args.input == "-" else args.input
    dwords = to_dwords(read_input(args.input), args.format, name)
    if not dwords:
        raise DecodeInputError(f"{name}: no packets: the input holds no dwords")
    if args.engine == "aql":
        packets = aql.decode(dwords, family=family)
    else:
        packets = ENGINES[args.engine].decode(dwords, family)
    out = sys.stdout
    width = len(str(max((p.offset for p in packets), default=0)))
    for p in packets:
        if args.json:
            out.write(json.dumps(p.to_dict()) + "\n")
        else:
            out.write(f"{'  ' * p.depth}{p.offset:>{width}}  {p.summary(family)}\n")
    bad = [p for p in packets if p.error]
    if bad:       # everything decodable was printed; say what was not, and where, in one line
        unit = "byte" if args.engine == "aql" else "dword"
        first = bad[0]
        where = f"{unit} {first.offset}" + (" of an indirect buffer" if first.depth else "")
        print(f"kfdtrace decode: {name}: {len(bad)} of {len(packets)} packets not decoded; first at "
              f"{where}: {first.name}: {first.error}", file=sys.stderr)
        return 1
    return 0
