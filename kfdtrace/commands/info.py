"""`kfdtrace info FILE`: what a trace holds — header, GPUs, records per kind, queues, allocations,
duration, and whether it was finalized or recovered (and up to where). `--json` for tools.

Opening a finalized trace reads only its index, so this is instant for any size; an unfinalized
trace needs a recovery scan, shown with a progress bar on a terminal.
"""
from __future__ import annotations

import json
import sys

from kfdtrace.abi import families
from kfdtrace.errors import UnknownFamilyError
from kfdtrace.trace import TraceReader

_BIG_SCAN = 8 << 20  # show a progress bar for recovery scans of files larger than this


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="summarize a trace file",
                              description="Summarize a trace: header, GPUs, records per kind, queues, "
                                          "allocations, duration, finalized or recovered.")
    p.add_argument("file", help="trace file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--all", action="store_true", help="list every allocation and queue (default: the first 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    with _progress() as progress, TraceReader(args.file, progress=progress) as reader:
        info = reader.info()
    if args.json:
        json.dump(_jsonable(info), sys.stdout, indent=2)
        print()
    else:
        print(format_info(info, limit=None if args.all else 20))
    for w in info["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on stderr, created only if a large recovery scan actually happens."""

    def __init__(self):
        self._bar = self._task = None

    def __enter__(self):
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if total < _BIG_SCAN or not sys.stderr.isatty():
                return
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
            self._bar = Progress(TextColumn("recovering trace"), BarColumn(), DownloadColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("scan", total=total)
        self._bar.update(self._task, completed=done)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    if x is None or isinstance(x, (int, float, str, bool)):
        return x
    return repr(x)


def _size(n) -> str:
    if not isinstance(n, int):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _hex(v) -> str:
    return f"{v:#x}" if isinstance(v, int) else str(v if v is not None else "-")


def _table(rows: list[list], head: list[str]) -> list[str]:
    cells = [head] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def format_info(info: dict, limit: int | None = 20) -> str:
    """The human-readable summary (what `kfdtrace info` prints)."""
    h = info["header"]
    out = []

    def line(label, value):
        out.append(f"{label:<12}{value}")

    line("trace", f"{info['path']} ({_size(info['size'])})")
    line("format", f"{info['format']}, written by {h.get('tool', 'kfdtrace')} {h.get('tool_version', '?')}")
    if info["finalized"]:
        st = info["status"]
        if info["exit_status"] is not None:
            st += f" (exit status {info['exit_status']})"
        line("status", st)
    else:
        up = info["recovered_upto"] or {}
        last = up.get("record")
        line("status", f"recovered (no usable index): {info['records']} records, up to byte {up.get('offset')}"
                       f" of {info['size']}" + (f", last record {last}" if last is not None else ""))
        line("", f"scan stopped: {up.get('reason')}")
    line("created", f"{h.get('created', '?')} on {h.get('host', '?')}")
    line("kernel", f"{h.get('kernel', '?')} {h.get('machine', '')}".rstrip())
    kv = h.get("kfd_version")
    if isinstance(kv, dict):
        backend = f" ({h['backend']} backend)" if h.get("backend") else ""
        line("KFD", f"{kv.get('major')}.{kv.get('minor')}{backend}")
    elif h.get("backend"):
        line("backend", h["backend"])
    argv = h.get("argv")
    if isinstance(argv, list):
        line("command", " ".join(map(str, argv)))
    script = h.get("script")
    if isinstance(script, dict):
        digest = f"  sha256 {script['sha256']}" if script.get("sha256") else ""
        line("script", f"{script.get('path', '?')}{digest}")
    mc = info.get("memory_capture")
    if mc:
        line("memory", "capture method " + (str(mc.get("method")) if isinstance(mc, dict) else str(mc)))
    line("duration", f"{info['duration_ns'] / 1e9:.6f} s")
    b = info.get("blobs") or {}
    repeats = f", {b['refs']:,} repeats stored once" if b.get("refs") else ""
    line("records", f"{info['records']:,} in {info['chunks']} chunks; blobs: {b.get('count', 0):,} "
                    f"({_size(b.get('bytes', 0))}){repeats}")

    if info["gpus"]:
        out += ["", "GPUs"]
        out += _table([[g.get("gpu_id", "?"), g.get("node", "-"), *_gfx_family(g), g.get("name", "-")]
                       for g in info["gpus"]], ["gpu_id", "node", "gfx", "family", "name"])

    out += ["", "records per kind"]
    unknown = set(info["unknown_kinds"])
    out += _table([[k, f"{v:,}", "(unknown kind: skipped)" if k in unknown else ""]
                   for k, v in info["counts"].items()], ["kind", "count", ""])

    qs = info["queues"]
    out += ["", f"queues ({len(qs)})"]
    if qs:
        out += _table([[q.get("queue_id"), q.get("gpu_id"), q.get("type"), q.get("engine"), _hex(q.get("ring_base")),
                        _size(q.get("ring_size")), q.get("submits"), q.get("created"),
                        "-" if q.get("destroyed") is None else q.get("destroyed")] for q in qs[:limit]],
                      ["id", "gpu", "type", "engine", "ring", "size", "submits", "created@", "destroyed@"])
        if limit is not None and len(qs) > limit:
            out.append(f"  ... {len(qs) - limit} more (--all)")

    al = info["allocations"]
    by_domain: dict = {}
    for a in al:
        d = by_domain.setdefault(str(a.get("domain")), [0, 0])
        d[0] += 1
        d[1] += a.get("size") if isinstance(a.get("size"), int) else 0
    summary = ", ".join(f"{d} {n} = {_size(s)}" for d, (n, s) in by_domain.items())
    out += ["", f"allocations ({len(al)}{': ' + summary if summary else ''})"]
    if al:
        out += _table([[_hex(a.get("handle")), a.get("gpu_id"), _hex(a.get("va")), _size(a.get("size")),
                        a.get("domain"), _hex(a.get("flags")), a.get("memwrites", 0), a.get("allocated"),
                        "-" if a.get("freed") is None else a.get("freed")] for a in al[:limit]],
                      ["handle", "gpu", "va", "size", "domain", "flags", "memwrites", "alloc@", "freed@"])
        if limit is not None and len(al) > limit:
            out.append(f"  ... {len(al) - limit} more (--all)")
    return "\n".join(out)


def _gfx_family(gpu: dict) -> tuple[str, str]:
    """gfx name and family of a header GPU entry, filled in from its gfx_target_version through
    the family registry when the recorder did not name them."""
    gfx, family, gtv = gpu.get("gfx"), gpu.get("family"), gpu.get("gfx_target_version")
    if not gfx or not family:
        try:
            fam = families.family_from_gfx_target_version(gtv)
            gfx, family = gfx or fam.name, family or fam.arch
        except UnknownFamilyError:
            try:
                gfx = gfx or families.gfx_name_from_target_version(gtv)
            except UnknownFamilyError:
                pass
    return str(gfx or "-"), str(family or "-")
