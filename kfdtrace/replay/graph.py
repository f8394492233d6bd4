"""The happens-before graph of a trace's submissions.

What a replay may reorder is what the recorded program did not order. The program orders work in
three ways, and each becomes edges between submissions (numbered in trace order):

* per queue: a queue executes its packets in ring order, so each submission follows the previous
  one on the same queue;
* GPU signal -> GPU wait: a wait packet (PM4 WAIT_REG_MEM, SDMA POLL_REGMEM, AQL barrier-AND/OR and
  barrier-value, also inside indirect buffers) on an address and value follows the first submission,
  in trace order, with a packet that writes a satisfying value there (RELEASE_MEM, SDMA FENCE,
  WRITE_DATA / WRITE_UNTILED, or an AQL completion signal, which decrements the signal value);
* signal order: two submissions that write different values to the same address keep their trace
  order, so a timeline's values still rise in the order the program produced them (a reordering
  that rewrote the timeline would break the synchronization protocol itself, not expose a data
  race);
* CPU wait -> later submissions: the program submitted nothing after a CPU wait until the wait
  returned, so every later submission follows it. The graph also names the submission whose
  signal satisfied each CPU wait (the one a hang report points at).

A wait satisfied only by a submission later in trace order (the program submitted the wait first)
gets no edge (it cannot order submissions without a cycle) and is listed in `forward`: policies
that wait for each submission to finish must not wait for those.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

from kfdtrace.replay.plan import CONDITIONS, M32, M64, TEST, Plan, Submission, SyncOp


@dataclass(slots=True)
class Edge:
    src: int              # submission index
    dst: int
    kind: str             # "queue" | "signal" | "order"
    addr: int = 0
    value: int = 0
    detail: str = ""

    def to_dict(self) -> dict:
        return {"from": self.src, "to": self.dst, "kind": self.kind, "addr": self.addr,
                "value": self.value, "detail": self.detail}


@dataclass(slots=True)
class CpuWait:
    pos: int              # index of the step in Plan.steps
    n: int                # record number
    op: SyncOp            # what the CPU waited for
    producer: int | None  # submission that wrote the satisfying value (None: not found)
    recorded: dict        # the wait record's fields
    last_before: int | None = None   # last submission before the wait, in trace order

    def to_dict(self) -> dict:
        return {"record": self.n, "addr": self.op.addr, "condition": self.op.func,
                "value": self.op.value, "producer": self.producer, "after": self.last_before}


def satisfies(sig: SyncOp, wait: SyncOp) -> bool:
    """Would the value `sig` writes make `wait` true? (compared in the narrower width)"""
    if sig.func != "write":
        return False
    m = M32 if min(sig.width, wait.width) == 4 else M64
    return TEST[wait.func](sig.value & wait.mask & m, wait.value & m)


class HBGraph:
    """Built lazily: the CPU waits are listed at once (the replay needs them at every wait); the
    edges, the signal index and the producers are computed on first use (reordering, hang and
    divergence reports), so a faithful replay does not pay for them."""

    def __init__(self, plan: Plan, drop_waits=()):
        self.plan = plan
        self.dropped = set(drop_waits)       # --unsafe-drop-wait: these submissions' waits are gone
        self.cpu_waits: list[CpuWait] = []
        self._built = False
        self._producers_done = False
        last = None
        for pos, st in enumerate(plan.steps):
            if st.kind == "submit":
                last = st.sub.index
            elif st.kind == "wait":
                f = st.fields
                func = CONDITIONS.get(str(f.get("condition", "ge")), ">=")
                addr = int(f.get("addr", 0))
                width = int(f.get("width", 8 if addr % 8 == 0 else 4))
                op = SyncOp("wait", addr, int(f.get("value", 0)), func, M64 if width == 8 else M32, width,
                            packet="CPU wait")
                self.cpu_waits.append(CpuWait(pos, st.n, op, None, f, last))

    def __getattr__(self, name):
        if name in ("preds", "edges", "forward", "unmatched", "signals", "_first"):
            self._build()
            return self.__dict__[name]
        raise AttributeError(name)

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        subs = self.plan.submissions
        self.preds: list[set[int]] = [set() for _ in subs]
        self.edges: list[Edge] = []
        self.forward: dict[int, list[tuple[SyncOp, int]]] = defaultdict(list)
        self.unmatched: dict[int, list[SyncOp]] = defaultdict(list)
        self.signals: dict[int, list[tuple[int, SyncOp]]] = defaultdict(list)   # addr -> [(sub, op)]
        self._first: dict[tuple, object] = {}
        for s in subs:
            for op in s.signals:
                self.signals[op.addr].append((s.index, op))
        last: dict[int, int] = {}
        for s in subs:
            prev = last.get(s.queue.key)
            if prev is not None:
                self._edge(Edge(prev, s.index, "queue"))
            last[s.queue.key] = s.index
            for w in (s.waits if s.index not in self.dropped else ()):
                self._match(s, w)
        for addr, ops in self.signals.items():
            prev = None
            for i, op in ops:
                if op.func != "write":
                    continue
                if prev is not None and prev[0] != i and prev[1] != op.value:
                    self._edge(Edge(prev[0], i, "order", addr, op.value,
                                    f"both write {addr:#x} ({prev[1]:#x}, then {op.value:#x})"))
                prev = (i, op.value)
        for cw in self.cpu_waits:
            cw.producer = self.producer(cw.op, None if cw.last_before is None else cw.last_before + 1)

    def _edge(self, e: Edge) -> None:
        if e.src != e.dst and e.src not in self.preds[e.dst]:
            self.preds[e.dst].add(e.src)
            self.edges.append(e)

    def producer(self, wait: SyncOp, before: int | None = None, me: Submission | None = None) -> int | None:
        """The first submission (trace order) whose signal satisfies `wait`; for AQL barriers
        (value reaching 0 through completion-signal decrements) the last decrement before."""
        cands = self.signals.get(wait.addr, ())
        if wait.func == "==" and wait.value == 0 and any(op.func == "dec" for _, op in cands):
            decs = [i for i, op in cands if op.func == "dec" and (before is None or i < before)
                    and (me is None or i != me.index)]
            return decs[-1] if decs else None
        if me is not None:
            local = [op for i, op in cands if i == me.index and op.index < wait.index and satisfies(op, wait)]
            if local:
                return me.index
        k = self._first_satisfying(wait, cands, me.index if me is not None else None)
        if k is None:
            return None
        i = cands[k][0]
        return i if before is None or i < before else None

    def _first_satisfying(self, wait: SyncOp, cands, skip: int | None) -> int | None:
        """Index into `cands` of the first write satisfying `wait` (outside submission `skip`).
        ">=" / ">" use a running maximum (bisected), "==" a first-occurrence table; others scan."""
        m = M32 if wait.width == 4 else M64
        mask = wait.mask & m
        if wait.func in (">=", ">", "=="):
            key = (wait.addr, mask, wait.func == "==")
            tab = self._first.get(key)
            if tab is None:
                vals = [(op.value & mask & (M32 if op.width == 4 else M64)) if op.func == "write" else None
                        for _, op in cands]
                if wait.func == "==":
                    tab = {}
                    for k, v in enumerate(vals):
                        if v is not None:
                            tab.setdefault(v, k)
                else:
                    run, best = [], -1
                    for v in vals:
                        best = max(best, -1 if v is None else v)
                        run.append(best)
                    tab = run
                self._first[key] = tab
            ref = wait.value & m
            if wait.func == "==":
                k = tab.get(ref)
            else:
                k = bisect.bisect_left(tab, ref if wait.func == ">=" else ref + 1)
                k = k if k < len(tab) else None
            if k is None or cands[k][0] != skip:
                return k
            return next((j for j in range(k + 1, len(cands))
                         if cands[j][0] != skip and satisfies(cands[j][1], wait)), None)
        for k, (i, op) in enumerate(cands):
            if i != skip and satisfies(op, wait):
                return k
        return None

    def _match(self, s: Submission, w: SyncOp) -> None:
        src = self.producer(w, me=s)
        if src is None:
            self.unmatched[s.index].append(w)
        elif src < s.index:
            self._edge(Edge(src, s.index, "signal", w.addr, w.value, w.describe()))
        elif src > s.index:
            self.forward[s.index].append((w, src))

    # -- queries ------------------------------------------------------------------------------------
    def succs(self) -> list[set[int]]:
        out: list[set[int]] = [set() for _ in self.preds]
        for d, ps in enumerate(self.preds):
            for p in ps:
                out[p].add(d)
        return out

    def independent(self, a: int, b: int) -> bool:
        """Neither submission happens before the other (no path between them)."""
        return not (self._reaches(a, b) or self._reaches(b, a))

    def _reaches(self, a: int, b: int) -> bool:
        if a > b:
            return False
        seen, todo = set(), [b]
        while todo:
            x = todo.pop()
            for p in self.preds[x]:
                if p == a:
                    return True
                if p > a and p not in seen:
                    seen.add(p)
                    todo.append(p)
        return False

    def to_dict(self) -> dict:
        return {"edges": [e.to_dict() for e in self.edges if e.kind != "queue"],
                "queue_edges": sum(e.kind == "queue" for e in self.edges),
                "cpu_waits": [w.to_dict() for w in self.cpu_waits],
                "forward_waits": {str(k): [{"addr": w.addr, "value": w.value, "producer": p} for w, p in v]
                                  for k, v in self.forward.items()},
                "unmatched_waits": {str(k): [{"addr": w.addr, "value": w.value, "func": w.func} for w in v]
                                    for k, v in self.unmatched.items()}}


__all__ = ["HBGraph", "Edge", "CpuWait", "satisfies"]
