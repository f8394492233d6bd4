"""The replay report overlay (`kfdtrace view FILE --report replay.json`).

Reads the JSON `kfdtrace replay --json` writes (docs/replay.md, "The report"): `divergences`,
`hangs`, `errors` and `faults`, each finding with where it happened — `record`, `t`,
`submission`, `queue`, and per kind: a hang's `stuck` queues (read pointer, submission, the packet
there), a divergence's buffer (`buffer`, `alloc` handle), the submissions that wrote it
(`writers`, `appeared_after`), its `wait_record`; an injected fault's `applied` position.

Every item is pinned to a packet or a record of the trace (`resolve`): a hang to the packet each
stuck queue sat at (matched by its decoded summary, else by the read pointer's offset in the
submission), a divergence to its checksum record plus the submission after which it appeared, a
fault to the submission it was applied to. The loader is tolerant — unknown keys are ignored, an
item may be nested in `at`/`where`/`location`/`applied`, a top-level list works, kinds are taken
from the list's key — so the overlay survives the report growing; a file that is not JSON is a
`ReportError` naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from kfdtrace.errors import KfdtraceError

#: list key -> kind (None: the item says)
LIST_KEYS = {"divergences": "divergence", "hangs": "hang", "errors": "error", "faults": "fault",
             "injected": "fault", "injected_faults": "fault", "timeouts": "hang",
             "events": None, "findings": None, "problems": None, "items": None}
_REC = ("record", "n", "record_n", "rec")
_SUB = ("submission", "submit", "submit_index", "submission_index")
_Q = ("queue", "queue_id", "qid")
_T = ("t", "t_ns", "time_ns")
_OFF = ("packet_offset", "dword", "dword_offset")
_PKT = ("packet_index",)
_MSG = ("message", "detail", "reason", "what", "description", "text", "msg")
_NEST = ("at", "where", "location", "applied")


class ReportError(KfdtraceError):
    """A replay report that cannot be read."""


@dataclass
class ReportItem:
    kind: str                       # divergence | hang | error | fault | ...
    message: str                    # the whole text (hangs: several lines)
    subkind: str = ""               # e.g. the fault kind ("drop-signal"), a finding's own kind
    record: int | None = None
    submission: int | None = None
    queue: int | None = None
    t: int | None = None
    offset: int | None = None       # dwords into the submission
    pkt_in_sub: int | None = None
    packet_text: str | None = None  # the decoded packet the report names (hang)
    raw: dict = field(default_factory=dict, repr=False)
    # resolved against a model
    sub: int | None = None
    packet: int | None = None
    related: list = field(default_factory=list)     # [(label, Target)]

    @property
    def title(self) -> str:
        return self.message.split("\n")[0]

    def where(self) -> str:
        parts = []
        if self.queue is not None:
            parts.append(f"queue {self.queue}")
        if self.submission is not None:
            parts.append(f"submission #{self.submission}")
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.t is not None:
            parts.append(f"{self.t / 1e6:.3f}ms")
        return ", ".join(parts)


def _int(d: dict, keys):
    for k in keys:
        v = d.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v == int(v):
            return int(v)
    return None


def _kind(word) -> str:
    w = str(word or "finding").lower()
    for key, kind in (("diverg", "divergence"), ("mismatch", "divergence"), ("checksum", "divergence"),
                      ("hang", "hang"), ("timeout", "hang"), ("fault", "fault"), ("inject", "fault"),
                      ("error", "error")):
        if key in w:
            return kind
    return w


def _item(d, list_kind: str | None) -> ReportItem | None:
    if not isinstance(d, dict):
        return None
    flat = dict(d)
    for nest in _NEST:
        if isinstance(d.get(nest), dict):
            flat = {**{k: v for k, v in d.items() if k != nest}, **d[nest]} if nest == "applied" \
                else {**d[nest], **{k: v for k, v in d.items() if k != nest}}
    own = flat.get("kind") or flat.get("type") or flat.get("category")
    kind = list_kind or _kind(own)
    sub = str(own) if own and _kind(own) != kind else ""
    msg = next((str(flat[k]) for k in _MSG if isinstance(flat.get(k), (str, int, float))
                and not isinstance(flat.get(k), bool)), "")
    if kind == "fault":
        spec = flat.get("spec") or sub
        outcome = flat.get("outcome")
        msg = f"{spec}: {outcome}" + (f" — {msg}" if msg and msg != outcome else "") if outcome else \
            (f"{spec}: {msg}" if msg else str(spec or "fault"))
    if not msg and ("expected" in flat or "actual" in flat):
        msg = f"expected {flat.get('expected')!r}, got {flat.get('actual')!r}"
    pkt = flat.get("packet")
    it = ReportItem(kind, msg.strip() or kind, sub, _int(flat, _REC), _int(flat, _SUB), _int(flat, _Q),
                    _int(flat, _T), _int(flat, _OFF), _int(flat, _PKT) if not isinstance(pkt, int) else pkt,
                    pkt if isinstance(pkt, str) else None, d)
    return it


class Report:
    """Items of a replay report, resolved against a trace model by `resolve()`."""

    def __init__(self, items: list[ReportItem], path: str = "", summary: str = "", notes=()):
        self.items = items
        self.path = path
        self.summary = summary
        self.notes = list(notes)
        self._by_packet: dict[int, list[ReportItem]] = {}
        self._by_record: dict[int, list[ReportItem]] = {}
        self._by_sub: dict[int, list[ReportItem]] = {}

    @classmethod
    def load(cls, path) -> "Report":
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as e:
            raise ReportError(f"{path}: cannot read the replay report: {e.strerror or e}") from None
        except ValueError as e:
            raise ReportError(f"{path}: not a JSON replay report: {e}") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data, path: str = "") -> "Report":
        items: list[ReportItem] = []
        summary, notes = "", []
        if isinstance(data, list):
            items = [it for it in (_item(d, None) for d in data) if it]
        elif isinstance(data, dict):
            for key, kind in LIST_KEYS.items():
                v = data.get(key)
                if isinstance(v, list):
                    items += [it for it in (_item(d, kind) for d in v) if it]
            bits = [f"{k} {data[k]}" for k in ("status", "policy", "seed") if isinstance(data.get(k), (str, int))
                    and not isinstance(data.get(k), bool)]
            summary = ", ".join(bits)
            notes = [str(n) for n in data.get("notes", []) if isinstance(n, (str, int))] \
                if isinstance(data.get("notes"), list) else []
        else:
            raise ReportError(f"{path}: a replay report is a JSON object or list, not {type(data).__name__}")
        return cls(items, path, summary, notes)

    # -- pinning items to the trace ---------------------------------------------------------------------
    def resolve(self, model) -> None:
        """Pin every item to a submission/packet/record of the (loaded) model."""
        from tui.model import UNIT, Target
        subs = model.subs
        self._by_packet, self._by_record, self._by_sub = {}, {}, {}

        def sub_of_record(n):
            j = int(np.searchsorted(model.sub_n, n)) if len(subs) else 0
            return j if j < len(subs) and subs[j].n == n else None

        def packet_in(s, offset=None, text=None, rptr=None):
            sub = subs[s]
            if not sub.count:
                return None
            idx = np.arange(sub.first, sub.first + sub.count)
            ring = idx[model.p_stream[idx] == 0]
            fam = model.queues[sub.qid].family
            if text:
                for i in idx.tolist():
                    if model.packet(i).summary(fam) == text:
                        return i
            if offset is None and rptr is not None:
                offset = (rptr - sub.wptr_before) * UNIT.get(sub.engine, 4) // 4
            if offset is not None and len(ring) and offset >= 0:
                j = int(np.searchsorted(model.p_off[ring], offset, side="right")) - 1
                if j >= 0:
                    return int(ring[j])
            return sub.first

        for it in self.items:
            r = it.raw if isinstance(it.raw, dict) else {}
            s = it.submission if it.submission is not None and 0 <= it.submission < len(subs) else None
            if s is None and it.record is not None:
                s = sub_of_record(it.record)
            if s is None and it.kind == "divergence" and isinstance(r.get("appeared_after"), int) \
                    and 0 <= r["appeared_after"] < len(subs):
                s = r["appeared_after"]
            if s is None and it.queue is not None and it.t is not None:
                cand = [j for j, x in enumerate(subs) if x.qid == it.queue and x.t <= it.t]
                s = cand[-1] if cand else None
            if s is None and it.queue is not None and it.record is None and it.t is None:
                cand = [j for j, x in enumerate(subs) if x.qid == it.queue]
                s = cand[-1] if cand else None        # a hang with only a queue: its last submission
            if s is not None:
                sub = subs[s]
                it.sub = s
                it.queue = sub.qid if it.queue is None else it.queue
                it.t = sub.t if it.t is None else it.t
                stuck = next((x for x in r.get("stuck", []) if isinstance(x, dict) and x.get("submission") == s),
                             None) if isinstance(r.get("stuck"), list) else None
                if it.pkt_in_sub is not None and 0 <= it.pkt_in_sub < sub.count:
                    it.packet = sub.first + it.pkt_in_sub
                else:
                    it.packet = packet_in(s, it.offset, it.packet_text or (stuck or {}).get("packet"),
                                          (stuck or {}).get("rptr"))
                self._by_sub.setdefault(s, []).append(it)
                if it.packet is not None:
                    self._by_packet.setdefault(it.packet, []).append(it)
            elif it.t is None and it.record is not None:
                try:
                    it.t = model.record(it.record).t
                except (IndexError, KfdtraceError):
                    pass
            if it.record is not None:
                self._by_record.setdefault(it.record, []).append(it)
            # what else the item names, as links
            rel = []
            if it.record is not None and it.sub is not None and subs[it.sub].n != it.record:
                rel.append((f"record {it.record}", Target("record", it.record)))
            for x in r.get("stuck", []) if isinstance(r.get("stuck"), list) else []:
                if isinstance(x, dict) and isinstance(x.get("submission"), int) and 0 <= x["submission"] < len(subs):
                    i = packet_in(x["submission"], None, x.get("packet"), x.get("rptr"))
                    if i is not None:
                        rel.append((f"queue {x.get('queue')} stuck at", Target("packet", i)))
                        if i != it.packet:
                            self._by_packet.setdefault(i, []).append(it)
            for key, label in (("appeared_after", "appeared after"), ("after", "replayed after")):
                v = r.get(key)
                if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(subs) and subs[v].count:
                    rel.append((f"{label} #{v}", Target("packet", subs[v].first)))
            for w in r.get("writers", []) if isinstance(r.get("writers"), list) else []:
                if isinstance(w, int) and 0 <= w < len(subs) and subs[w].count:
                    rel.append((f"written by #{w}", Target("packet", subs[w].first)))
            for key in ("wait_record", "checksum_record"):
                v = r.get(key)
                if isinstance(v, int) and v != it.record:
                    rel.append((key.replace("_", " "), Target("record", v)))
            h = r.get("alloc")
            a = next((x for x in model.allocs if x.handle == h), None) if isinstance(h, int) else None
            if a is None and isinstance(r.get("buffer"), int):
                a = model.alloc_at(r["buffer"])
            if a is not None:
                rel.append((f"buffer {a.va:#x}", Target("alloc", a.index)))
            it.related = rel

    def target(self, it: ReportItem):
        from tui.model import Target
        if it.packet is not None:
            return Target("packet", it.packet)
        if it.record is not None:
            return Target("record", it.record)
        return it.related[0][1] if it.related else None

    def items_for(self, model, i: int) -> list[ReportItem]:
        """Items pinned to packet i, or (for items without a packet) to its submission."""
        out = list(self._by_packet.get(i, []))
        s = model.sub_of(i)
        out += [it for it in self._by_sub.get(s, []) if it not in out and it.packet is None]
        return out

    def items_for_record(self, n: int) -> list[ReportItem]:
        return list(self._by_record.get(n, []))

    def flagged_packets(self) -> set[int]:
        return set(self._by_packet)
