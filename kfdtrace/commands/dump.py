"""`kfdtrace dump FILE [--queue Q] [--kind K] [--range A:B] [--json]`: every record, decoded.

Text output is made for grep: one line per record (`n  t  tid  kind  details`), and under each
submission one indented line per packet, decoded by `kfdtrace.packets` (register names, event
names, addresses), packets of indirect buffers indented one level deeper. ioctl arguments are
shown by field name (`abi.decode_ioctl`): the input, then `->` and the fields the kernel changed;
pointer payloads are decoded element by element. Dispatches name their kernel, resolved from the
trace's `codeobj` records (AQL: kernel_object -> kernel descriptor; PM4: COMPUTE_PGM_LO/HI ->
code address). `--json` prints one JSON object per record with the same decoded content.

The decoding helpers (`TraceDecoder`) are shared with `kfdtrace export`.
"""
from __future__ import annotations

import ctypes
import json
import sys

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError, TraceError
from kfdtrace.trace import BlobRef, TraceReader


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("dump", help="print every record of a trace, decoded",
                              description="Print every record of a trace, decoded: ioctl arguments by "
                                          "field name, every packet of every submission.")
    p.add_argument("file", help="trace file")
    p.add_argument("--queue", type=int, metavar="Q", help="only records of queue Q (submissions, "
                                                        "queue creation/destruction, signals)")
    p.add_argument("--kind", action="append", metavar="K",
                   help="only records of kind K (repeatable, or comma-separated: ioctl,submit)")
    p.add_argument("--range", metavar="A:B", help="only record numbers A <= n < B (either may be empty)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--no-packets", action="store_true", help="do not decode submitted packets")
    p.set_defaults(func=run)


def parse_range(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    a, sep, b = text.partition(":")
    try:
        start = int(a, 0) if a.strip() else None
        stop = int(b, 0) if b.strip() else None
        if not sep:
            stop = start + 1
    except (ValueError, TypeError):
        raise KfdtraceError(f"--range {text!r}: expected A:B with integer record numbers") from None
    return start, stop


def parse_kinds(values) -> set[str] | None:
    if not values:
        return None
    kinds = {k.strip() for v in values for k in v.split(",") if k.strip()}
    from kfdtrace.trace import KINDS
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise KfdtraceError(f"--kind: unknown record kind(s) {', '.join(unknown)}; "
                            f"kinds: {', '.join(KINDS)}")
    return kinds


def run(args) -> int:
    start, stop = parse_range(args.range)
    kinds = parse_kinds(args.kind)
    out = sys.stdout
    with TraceReader(args.file) as reader:
        dec = TraceDecoder(reader, packets=not args.no_packets)
        for rec in reader.records(kinds=kinds, start=start, stop=stop):
            if args.queue is not None and record_queue(rec) != args.queue:
                continue
            if args.json:
                out.write(json.dumps(dec.to_json(rec), separators=(",", ":")) + "\n")
            else:
                out.write("\n".join(dec.text(rec)) + "\n")
        for w in reader.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def record_queue(rec) -> int | None:
    f = rec.fields
    q = f.get("queue_id", f.get("queue"))
    return q if isinstance(q, int) else None


# -- formatting helpers ------------------------------------------------------------------------------
#: fields shown in decimal: counts, ids and values people compare with the program's own numbers
DECIMAL = {"fd", "queue_id", "queue", "value", "value_seen", "result", "errno", "ret", "size",
           "length", "wptr", "wptr_before", "wptr_after", "exit_status", "events", "timeout",
           "sdma_engine_id", "node"}


def fmt(v, key: str = "") -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        if key in DECIMAL:
            return str(v)
        return hex(v) if v >= 10 or v < -9 else str(v)
    if isinstance(v, BlobRef):
        return f"blob:{bytes(v).hex()[:12]}"
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} B>" if len(v) > 16 else (bytes(v).hex() or "''")
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={fmt(x, k)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        items = [fmt(x, key) for x in v[:8]]
        return "[" + ", ".join(items) + (f", …+{len(v) - 8}" if len(v) > 8 else "") + "]"
    return str(v)


def jsonable(x):
    if isinstance(x, BlobRef):
        return {"blob": bytes(x).hex()}
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).hex()
    if x is None or isinstance(x, (int, float, str, bool)):
        return x
    return repr(x)


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested decoded struct fields -> {"a.b": v}; lists stay values."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class TraceDecoder:
    """Decodes records of one trace: ioctls, payloads, submissions (with their IBs), kernel names."""

    def __init__(self, reader: TraceReader, packets: bool = True):
        self.reader = reader
        self.packets = packets
        self.families: dict[int, object] = {}
        from kfdtrace.abi.families import get_family
        from kfdtrace.trace.reader import gpus_of
        for g in gpus_of(reader.header):
            try:
                self.families[g["gpu_id"]] = get_family(g.get("gfx") or g.get("gfx_target_version"))
            except (KfdtraceError, KeyError, TypeError):
                pass
        self.queues: dict[int, dict] = {q["queue_id"]: q for q in reader.queues
                                        if isinstance(q, dict) and "queue_id" in q}
        self.kernels_by_kd: dict[int, str] = {}     # kernel descriptor VA -> kernel name
        self.kernels_by_code: dict[int, str] = {}   # code entry VA -> kernel name
        self._kernels_loaded = False
        self.pgm: dict[int, int] = {}               # PM4 queue -> COMPUTE_PGM address set last

    # -- code objects ---------------------------------------------------------------------------------
    def _load_kernels(self) -> None:
        """Kernel names by descriptor and code address, from every codeobj record."""
        self._kernels_loaded = True
        from kfdtrace.codeobj import CodeObject
        try:
            recs = list(self.reader.records(kinds="codeobj"))
        except TraceError:
            return
        for r in recs:
            try:
                co = CodeObject.from_bytes(self.reader.blob(r["blob"]), source=f"codeobj record {r.n}")
            except (KfdtraceError, KeyError, TypeError):
                continue
            base = r.get("va", 0)
            for name, k in co.kernels.items():
                self.kernels_by_kd[base + k.descriptor_vaddr] = name
                self.kernels_by_code[base + k.code_vaddr] = name

    def kernel_for(self, pkt, queue_id) -> str | None:
        if not self._kernels_loaded:
            self._load_kernels()
        if pkt.name == "KERNEL_DISPATCH":
            return self.kernels_by_kd.get(pkt.fields.get("kernel_object"))
        if pkt.name.startswith("DISPATCH_"):
            return self.kernels_by_code.get(self.pgm.get(queue_id))
        return None

    def _track_pgm(self, pkt, queue_id, family) -> None:
        if pkt.name != "SET_SH_REG":
            return
        from kfdtrace.packets import registers
        reg, values = pkt.fields.get("reg"), pkt.fields.get("values") or []
        try:
            name = registers.reg_name(reg, family) if isinstance(reg, int) else None
        except KfdtraceError:
            name = None
        if name == "COMPUTE_PGM_LO" and values:
            hi = values[1] if len(values) > 1 else (self.pgm.get(queue_id, 0) >> 40)
            self.pgm[queue_id] = ((values[0] & 0xFFFFFFFF) | (hi & 0xFF) << 32) << 8
        elif name == "COMPUTE_PGM_HI" and values:
            lo = (self.pgm.get(queue_id, 0) >> 8) & 0xFFFFFFFF
            self.pgm[queue_id] = (lo | (values[0] & 0xFF) << 32) << 8

    # -- submissions ----------------------------------------------------------------------------------
    def submit_packets(self, rec) -> tuple[list, str | None]:
        """(packets, error) of a submit record, IB packets included (depth > 0)."""
        from kfdtrace.packets import decode_stream
        f = rec.fields
        data = f.get("dwords", b"")
        if isinstance(data, BlobRef):
            data = self.reader.blob(data)
        if not isinstance(data, (bytes, bytearray)) or not data:
            return [], None
        qid = f.get("queue_id")
        q = self.queues.get(qid, {})
        gpu = f.get("gpu_id", q.get("gpu_id"))
        family = self.families.get(gpu)
        engine = f.get("engine") or q.get("engine")
        ibs = {}
        for ib in f.get("ibs") or []:
            if isinstance(ib, dict) and isinstance(ib.get("blob"), BlobRef):
                ibs[(ib.get("addr"), ib.get("size"))] = ib["blob"]

        def follow(addr, ndw):
            h = ibs.get((addr, ndw * 4))
            return self.reader.blob(h) if h is not None else None

        if len(data) % 4:
            data = bytes(data) + bytes(4 - len(data) % 4)
        try:
            pkts = decode_stream(engine, data, family, follow=follow)
        except KfdtraceError as e:
            return [], str(e)
        for p in pkts:
            self._track_pgm(p, qid, family)
            p.fields["_kernel"] = self.kernel_for(p, qid) if "DISPATCH" in p.name else None
        return pkts, None

    # -- ioctls ---------------------------------------------------------------------------------------
    @staticmethod
    def ioctl_decoded(f: dict) -> tuple[dict | None, dict | None]:
        req, a_in, a_out = f.get("request"), f.get("arg_in"), f.get("arg_out")
        if not isinstance(req, int) or abi.lookup(req) is None:
            return None, None
        try:
            d_in = abi.decode_ioctl(req, a_in) if isinstance(a_in, bytes) else None
            d_out = abi.decode_ioctl(req, a_out) if isinstance(a_out, bytes) else None
        except KfdtraceError:
            return None, None
        return d_in, d_out

    def payload_elements(self, f: dict, p: dict, which: str) -> list | None:
        """Decoded elements of a payload (e.g. kfd_event_data), when its element struct is known."""
        data = p.get(which)
        if isinstance(data, BlobRef):
            data = self.reader.blob(data)
        if not isinstance(data, bytes):
            return None
        name = str(f.get("name", "")).removeprefix("AMDKFD_IOC_")
        for spec in abi.POINTER_PAYLOADS.get(name, []):
            if spec.ptr_field == p.get("field") and spec.elem_struct is not None:
                size = ctypes.sizeof(spec.elem_struct)
                return [abi.struct_to_dict(spec.elem_struct.from_buffer_copy(data[i:i + size]))
                        for i in range(0, len(data) - size + 1, size)]
        return None

    # -- text -----------------------------------------------------------------------------------------
    def text(self, rec) -> list[str]:
        head = f"{rec.n:>7} {rec.t / 1e9:>12.6f} {rec.tid:>7} {rec.kind:<13}"
        try:
            body, more = self._text_body(rec)
        except (KfdtraceError, KeyError, TypeError, ValueError, AttributeError) as e:
            return [f"{head} !! cannot decode: {e}"]
        return [f"{head} {body}".rstrip()] + more

    def _text_body(self, rec) -> tuple[str, list[str]]:
        f, kind = rec.fields, rec.kind
        if kind == "ioctl":
            return self._ioctl_text(f)
        if kind == "submit":
            q = self.queues.get(f.get("queue_id"), {})
            unit = {"pm4": "dw", "sdma": "B", "aql": "pkt"}.get(f.get("engine"), "")
            data = f.get("dwords")
            size = len(data) if isinstance(data, bytes) else "blob"
            line = (f"queue={f.get('queue_id')} {f.get('engine')} wptr {f.get('wptr_before')}->"
                    f"{f.get('wptr_after')}{unit} ({size} B) doorbell={fmt(f.get('doorbell'))}"
                    f" ibs={len(f.get('ibs') or [])}")
            if q.get("type"):
                line += f" type={q['type']}"
            if f.get("error"):
                line += f" !! {f['error']}"
            more = []
            if self.packets:
                pkts, err = self.submit_packets(rec)
                if err:
                    more.append(f"{'':>8}!! {err}")
                fam = self.families.get(f.get("gpu_id", q.get("gpu_id")))
                for p in pkts:
                    kname = p.fields.pop("_kernel", None)
                    s = p.summary(fam)
                    if kname:
                        s += f" kernel={kname}"
                    where = f"ib+{p.offset * 4:04x}" if p.depth else f"+{p.offset * (4 if p.engine != 'aql' else 1):04x}"
                    more.append(f"{'':>8}{'  ' * (p.depth + 1)}{where} {s}")
            return line, more
        if kind == "memwrite":
            return (f"va={fmt(f.get('va'))} size={f.get('size')} alloc={fmt(f.get('alloc'))} "
                    f"data={fmt(f.get('data'))}"), []
        if kind == "memwrite_runs":
            runs = self.reader.memory_writes(rec)
            return (f"va={fmt(f.get('va'))} size={f.get('size')} alloc={fmt(f.get('alloc'))} "
                    f"runs={len(runs)}"), [f"{'':>10}{va:#x} +{len(d):#x}" for va, d in runs[:64]]
        if kind == "error":
            text = str(f.get("text", "")).rstrip().splitlines()
            return (f"type={f.get('type')} {text[-1] if text else ''}",
                    [f"{'':>10}| {line}" for line in text])
        return " ".join(f"{k}={fmt(v, k)}" for k, v in f.items()), []

    def _ioctl_text(self, f: dict) -> tuple[str, list[str]]:
        d_in, d_out = self.ioctl_decoded(f)
        name = str(f.get("name", "?")).removeprefix("AMDKFD_IOC_")
        err = f.get("errno", 0)
        res = "ok" if not err else f"errno {err}"
        dur = f.get("dur_ns")
        tail = f" {res} {dur / 1000:.1f}us fd={f.get('fd')}" if isinstance(dur, int) else f" {res}"
        if d_in is None:
            return f"{name} request={fmt(f.get('request'))} arg_in={fmt(f.get('arg_in'))} " \
                   f"arg_out={fmt(f.get('arg_out'))}{tail}", self._payload_lines(f)
        fin, fout = _flat(d_in.get("fields", {})), _flat(d_out.get("fields", {})) if d_out else {}
        syms = dict(d_in.get("symbols", {}))
        args = ", ".join(f"{k}={syms.get(k, fmt(v))}" for k, v in fin.items())
        osyms = d_out.get("symbols", {}) if d_out else {}
        changed = ", ".join(f"{k}={osyms.get(k, fmt(v))}" for k, v in fout.items() if fin.get(k) != v)
        line = f"{name}({args})" + (f" -> {changed}" if changed else "") + tail
        return line, self._payload_lines(f)

    def _payload_lines(self, f: dict) -> list[str]:
        out = []
        for p in f.get("payloads") or []:
            if not isinstance(p, dict):
                continue
            for which in ("data_in", "data_out"):
                data = p.get(which)
                if data is None:
                    continue
                els = self.payload_elements(f, p, which)
                direction = "in " if which == "data_in" else "out"
                if els is not None:
                    for i, e in enumerate(els):
                        out.append(f"{'':>10}{direction} {p.get('field')}[{i}] @{fmt(p.get('addr'))}: "
                                   + ", ".join(f"{k}={fmt(v)}" for k, v in _flat(e).items()))
                else:
                    raw = self.reader.blob(data) if isinstance(data, BlobRef) else data
                    shown = raw.hex() if len(raw) <= 64 else raw[:64].hex() + "…"
                    out.append(f"{'':>10}{direction} {p.get('field')} @{fmt(p.get('addr'))}: "
                               f"{len(raw)} B {shown}")
        return out

    # -- json -----------------------------------------------------------------------------------------
    def to_json(self, rec) -> dict:
        out = {"n": rec.n, "t": rec.t, "tid": rec.tid, "kind": rec.kind, "fields": jsonable(rec.fields)}
        try:
            if rec.kind == "ioctl":
                d_in, d_out = self.ioctl_decoded(rec.fields)
                if d_in is not None:
                    out["decoded"] = {"in": jsonable(d_in), "out": jsonable(d_out)}
                pl = []
                for p in rec.fields.get("payloads") or []:
                    if isinstance(p, dict):
                        pl.append({w: self.payload_elements(rec.fields, p, w) for w in ("data_in", "data_out")})
                if any(any(v is not None for v in x.values()) for x in pl):
                    out["payloads_decoded"] = jsonable(pl)
            elif rec.kind == "submit" and self.packets:
                pkts, err = self.submit_packets(rec)
                fam = self.families.get(rec.fields.get("gpu_id"))
                items = []
                for p in pkts:
                    kname = p.fields.pop("_kernel", None)
                    d = p.to_dict()
                    d["summary"] = p.summary(fam)
                    if kname:
                        d["kernel"] = kname
                    items.append(d)
                out["packets"] = items
                if err:
                    out["decode_error"] = err
        except (KfdtraceError, KeyError, TypeError, ValueError, AttributeError) as e:
            out["decode_error"] = str(e)
        return out


__all__ = ["TraceDecoder", "parse_range", "parse_kinds", "record_queue", "fmt", "jsonable"]
