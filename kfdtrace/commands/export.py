"""`kfdtrace export FILE --format perfetto [-o out.json]`: a Chrome/Perfetto JSON trace.

Open the output in https://ui.perfetto.dev or chrome://tracing. Layout:

* process "CPU (pid N)": one track per recording thread; ioctls are slices (start, duration as
  recorded), CPU waits are slices from the first WAIT_EVENTS of the wait to its result (an
  instant when it did not need to sleep), markers are instants;
* process "GPU queues": one track per queue; a submission is a slice from its doorbell until the
  queue's next submission or the first successful CPU wait after it (when the CPU knew it done),
  its args the decoded packet summaries;
* flow arrows from each timeline signal (on its queue's track) to the CPU wait that saw it.

Large traces get a progress bar on a terminal.
"""
from __future__ import annotations

import json
import os
import sys

from kfdtrace.errors import KfdtraceError
from kfdtrace.trace import TraceReader

_BIG = 50_000            # records: show a progress bar above this
_MAX_PACKETS = 16        # packet summaries stored per submission slice


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="convert a trace for other tools (Perfetto)",
                              description="Convert a trace to a Chrome/Perfetto JSON trace: ioctls and "
                                          "CPU waits on thread tracks, submissions on one track per "
                                          "queue, signal->wait flow arrows.")
    p.add_argument("file", help="trace file")
    p.add_argument("--format", choices=("perfetto",), default="perfetto", help="output format")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: <trace stem>.json)")
    p.add_argument("--no-packets", action="store_true", help="do not decode packets into slice args")
    p.set_defaults(func=run)


def run(args) -> int:
    out = args.output or os.path.splitext(os.path.basename(args.file))[0] + ".json"
    with TraceReader(args.file) as reader:
        events = perfetto_events(reader, packets=not args.no_packets, progress=_progress(len(reader)))
        warnings = list(reader.warnings)
    for w in warnings:                       # e.g. a recovered trace: the export is partial
        print(f"warning: {w}", file=sys.stderr)
    try:
        with open(out, "w") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ns",
                       "otherData": {"source": os.path.basename(args.file)}}, f, separators=(",", ":"),
                      default=_json_value)
    except OSError as e:
        raise KfdtraceError(f"cannot write {out}: {e.strerror}") from None
    print(f"kfdtrace export: {len(events)} events -> {out}", file=sys.stderr)
    return 0


def _json_value(v):
    """A field value JSON cannot hold (a damaged or foreign trace may put bytes anywhere)."""
    from kfdtrace.commands.dump import jsonable
    return jsonable(v) if isinstance(v, (bytes, bytearray)) else repr(v)


class _progress:
    """A rich progress bar on stderr for big traces on a terminal; a no-op otherwise."""

    def __init__(self, total: int):
        self.total, self.bar, self.task = total, None, None
        if total >= _BIG and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("records", total=total)

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            if done >= self.total:
                self.bar.stop()
                self.bar = None


def _us(t_ns: int) -> float:
    return t_ns / 1000.0


def perfetto_events(reader: TraceReader, *, packets: bool = True, progress=None) -> list[dict]:
    """The Chrome JSON trace events of a trace (one pass over the records)."""
    from kfdtrace.commands.dump import TraceDecoder, jsonable

    dec = TraceDecoder(reader, packets=packets)
    pid = int(reader.header.get("pid") or 1)
    gpu_pid = pid + 1
    ev: list[dict] = [
        {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"CPU (pid {pid})"}},
        {"ph": "M", "name": "process_name", "pid": gpu_pid, "args": {"name": "GPU queues"}},
    ]
    threads: set[int] = set()
    queues: dict[int, dict] = {}
    open_submit: dict[int, dict] = {}          # queue -> its last submission slice (still open)
    wait_start: dict[int, int] = {}            # tid -> t of the first WAIT_EVENTS of a pending wait
    signals: dict[int, list] = {}              # value address -> [(value, queue, t, flow id)]
    flow_id = 0
    t_end = reader.duration_ns

    def close_submit(q: int, t: int) -> None:
        s = open_submit.pop(q, None)
        if s is not None:
            s["dur"] = max(0.001, _us(t) - s["ts"])

    n = 0
    for rec in reader.records():
        n += 1
        if progress is not None and n % 4096 == 0:
            progress(n)
        f, t, tid = rec.fields, rec.t, rec.tid
        if tid not in threads:
            threads.add(tid)
            ev.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": f"thread {tid}"}})
        kind = rec.kind
        try:
            if kind == "ioctl":
                name = str(f.get("name", "ioctl")).removeprefix("AMDKFD_IOC_")
                args = {"errno": f.get("errno"), "n": rec.n}
                d_in, d_out = dec.ioctl_decoded(f)
                if d_out is not None:
                    args["fields"] = jsonable(d_out.get("fields"))
                ev.append({"ph": "X", "name": name, "cat": "ioctl", "pid": pid, "tid": tid,
                           "ts": _us(t), "dur": max(0.001, _us(f.get("dur_ns") or 0)), "args": args})
                if name == "WAIT_EVENTS":
                    wait_start.setdefault(tid, t)
            elif kind == "wait":
                start = wait_start.pop(tid, t)
                slice_ = {"ph": "X", "name": f"wait >= {f.get('value')}", "cat": "wait", "pid": pid,
                          "tid": tid, "ts": _us(start), "dur": max(0.001, _us(t - start)),
                          "args": {"addr": hex(f.get("addr") or 0), "result": f.get("result"),
                                   "value_seen": f.get("value_seen"), "n": rec.n}}
                ev.append(slice_)
                if f.get("result") == "ok":
                    for q in list(open_submit):
                        close_submit(q, t)
                    for value, q, ts, fid in signals.pop(f.get("addr"), []):
                        if value <= (f.get("value_seen") or f.get("value") or 0):
                            ev.append({"ph": "f", "bp": "e", "id": fid, "name": "signal", "cat": "fence",
                                       "pid": pid, "tid": tid, "ts": slice_["ts"] + slice_["dur"] / 2})
                        else:
                            signals.setdefault(f.get("addr"), []).append((value, q, ts, fid))
            elif kind == "submit":
                q = f.get("queue_id")
                if q not in queues:
                    queues[q] = {}
                    qi = dec.queues.get(q, {})
                    ev.append({"ph": "M", "name": "thread_name", "pid": gpu_pid, "tid": q,
                               "args": {"name": f"queue {q} ({qi.get('type', f.get('engine'))}, "
                                                f"gpu {qi.get('gpu_id', f.get('gpu_id'))})"}})
                close_submit(q, t)
                args = {"wptr": f"{f.get('wptr_before')}->{f.get('wptr_after')}", "n": rec.n,
                        "ibs": len(f.get("ibs") or [])}
                name = f"submit {f.get('engine')}"
                if packets:
                    pkts, err = dec.submit_packets(rec)
                    fam = dec.families.get(f.get("gpu_id"))
                    top = [p for p in pkts if not p.depth]
                    kernels = [k for k in (p.fields.pop("_kernel", None) for p in pkts) if k]
                    args["packets"] = [p.summary(fam) for p in top[:_MAX_PACKETS]]
                    if len(top) > _MAX_PACKETS:
                        args["packets"].append(f"... {len(top) - _MAX_PACKETS} more")
                    if kernels:
                        name = "dispatch " + ", ".join(dict.fromkeys(kernels))
                    elif top:
                        name = ", ".join(dict.fromkeys(p.name for p in top))[:80]
                    if err:
                        args["decode_error"] = err
                s = {"ph": "X", "name": name, "cat": "submit", "pid": gpu_pid, "tid": q, "ts": _us(t),
                     "dur": 0.001, "args": args}
                ev.append(s)
                open_submit[q] = s
            elif kind == "signal":
                q = f.get("queue")
                flow_id += 1
                if q is not None and q in open_submit:
                    ev.append({"ph": "s", "id": flow_id, "name": "signal", "cat": "fence", "pid": gpu_pid,
                               "tid": q, "ts": open_submit[q]["ts"]})
                else:
                    ev.append({"ph": "s", "id": flow_id, "name": "signal", "cat": "fence", "pid": pid,
                               "tid": tid, "ts": _us(t)})
                    ev.append({"ph": "i", "s": "t", "name": f"signal {f.get('value')}", "pid": pid,
                               "tid": tid, "ts": _us(t)})
                signals.setdefault(f.get("addr"), []).append((f.get("value") or 0, q, t, flow_id))
            elif kind == "marker":
                ev.append({"ph": "i", "s": "g", "name": str(f.get("label")), "pid": pid, "tid": tid,
                           "ts": _us(t)})
            elif kind in ("queue_create", "queue_destroy", "error", "end"):
                ev.append({"ph": "i", "s": "t", "name": kind, "pid": pid, "tid": tid, "ts": _us(t),
                           "args": jsonable({k: v for k, v in f.items() if k != "text"})})
        except (KfdtraceError, KeyError, TypeError, ValueError, AttributeError) as e:
            ev.append({"ph": "i", "s": "t", "name": f"undecodable {kind}", "pid": pid, "tid": tid,
                       "ts": _us(t), "args": {"n": rec.n, "error": str(e)}})
    for q in list(open_submit):
        close_submit(q, t_end)
    # signals no wait ever saw: end their arrows nowhere (drop the dangling starts)
    pending = {fid for lst in signals.values() for *_, fid in lst}
    if pending:
        ev = [e for e in ev if not (e.get("ph") == "s" and e.get("id") in pending)]
    if progress is not None:
        progress(len(reader))
    return ev


__all__ = ["perfetto_events"]
