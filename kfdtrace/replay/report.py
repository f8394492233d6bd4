"""What a replay found: divergences, hangs, errors, injected faults — as text and as JSON.

Every finding carries where it happened in the trace (record number, submission index, queue) and
when (the recorded time `t` in ns since the trace started, and `replay_s`, seconds into the
replay), so `kfdtrace view` can overlay them on the trace. `seq` orders findings as they happened,
which is how an injected fault's consequence is found: the first finding after it.

Exit status: 0 the replay matched, 1 it diverged, 2 an error or a hang, 130 interrupted.
"""
from __future__ import annotations

import json
import time

from kfdtrace.errors import KfdtraceError

STATUS_EXIT = {"matched": 0, "diverged": 1, "hang": 2, "error": 2, "refused": 2, "interrupted": 130}
OUTCOME = {"error": "error surfaced", "hang": "hang detected", "divergence": "divergence"}


class Report:
    def __init__(self, trace: str, **info):
        self.trace = trace
        self.info = dict(info)          # backend, target, policy, seed, submissions, ...
        self.findings: list[dict] = []  # every divergence, hang and error, in order
        self.notes: list[str] = []
        self.faults: list = []          # inject.Fault
        self.order: list[int] = []      # submission indices in the order they were replayed
        self.replayed = 0
        self.interrupted = False
        self.teardown: dict = {}
        self.t0 = time.monotonic()
        self.elapsed = 0.0
        self._seq = 0

    # -- adding ---------------------------------------------------------------------------------------
    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, kind: str, message: str, **where) -> dict:
        """kind: "divergence" | "hang" | "error"."""
        f = {"kind": kind, "seq": self.seq(), "message": message,
             "replay_s": round(time.monotonic() - self.t0, 6), **where}
        self.findings.append(f)
        return f

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def of(self, kind: str) -> list[dict]:
        return [f for f in self.findings if f["kind"] == kind]

    @property
    def divergences(self) -> list[dict]:
        return self.of("divergence")

    @property
    def hangs(self) -> list[dict]:
        return self.of("hang")

    @property
    def errors(self) -> list[dict]:
        return self.of("error")

    # -- verdict --------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.info.get("refused"):
            return "refused"
        if self.hangs:
            return "hang"
        if self.errors:
            return "error"
        if self.divergences:
            return "diverged"
        return "matched"

    @property
    def exit_status(self) -> int:
        return STATUS_EXIT[self.status]

    def settle_faults(self) -> None:
        """Each applied fault's outcome: the first finding at or after it."""
        for fault in self.faults:
            if fault.applied is None:
                fault.outcome, fault.detail = "not reached", "the replay ended before this fault's point"
                continue
            after = [f for f in self.findings if f["seq"] >= fault.applied["seq"]]
            if not after:
                fault.outcome, fault.detail = "none", "the replay matched the recording after it"
            else:
                first = after[0]
                fault.outcome = OUTCOME[first["kind"]]
                fault.detail = first["message"].split("\n")[0]

    # -- output ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"trace": self.trace, "status": self.status, "exit_status": self.exit_status,
                **self.info, "replayed": self.replayed, "elapsed_s": round(self.elapsed, 6),
                "order": self.order,
                "divergences": self.divergences, "hangs": self.hangs, "errors": self.errors,
                "faults": [f.to_dict() for f in self.faults], "notes": self.notes,
                "teardown": self.teardown}

    def write_json(self, path: str) -> None:
        write_json(self.to_dict(), path)

    def text(self) -> str:
        i = self.info
        lines = [f"replay of {self.trace} on {i.get('target', '?')}: {self.status.upper()}",
                 f"  policy {i.get('policy', 'recorded')}"
                 + (f", seed {i['seed']}" if i.get("seed") is not None else "")
                 + f"; {self.replayed} of {i.get('submissions', '?')} submissions replayed in "
                   f"{self.elapsed:.2f} s"]
        for f in self.findings:
            head = f["kind"].upper()
            where = ", ".join(x for x in (
                f"record {f['record']}" if f.get("record") is not None else "",
                f"after submission #{f['after']}" if f.get("after") is not None else "",
                f"queue {f['queue']}" if f.get("queue") is not None else "") if x)
            lines.append(f"  {head}{' (' + where + ')' if where else ''}: {f['message']}")
        for fault in self.faults:
            where = ""
            if fault.applied:
                a = fault.applied
                where = " at " + ", ".join(x for x in (
                    f"submission #{a['submission']}" if a.get("submission") is not None else "",
                    f"record {a['record']}" if a.get("record") is not None else "",
                    f"queue {a['queue']}" if a.get("queue") is not None else "") if x)
            lines.append(f"  FAULT {fault.spec}{where}: {fault.outcome}"
                         + (f" — {fault.detail}" if fault.detail else ""))
        for n in self.notes:
            lines.append(f"  note: {n}")
        leaks = self.teardown.get("leaks")
        if leaks and any(leaks.values()):
            lines.append(f"  LEAKED after teardown: {leaks}")
        return "\n".join(lines)


def write_json(obj, path: str) -> None:
    """`obj` as indented JSON to `path` ("-" = stdout); an unwritable path is a KfdtraceError."""
    data = json.dumps(obj, indent=1, default=_jsonable)
    if path == "-":
        print(data)
        return
    try:
        with open(path, "w") as fh:
            fh.write(data + "\n")
    except OSError as e:
        raise KfdtraceError(f"cannot write the report to {path}: {e.strerror}") from None


def _jsonable(o):
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if isinstance(o, set):
        return sorted(o)
    return str(o)


__all__ = ["Report", "STATUS_EXIT", "write_json"]
