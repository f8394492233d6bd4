"""Reorder policies: in which order a replay submits a trace's submissions.

A replay keeps everything that is not a submission (ioctls, mmaps, CPU waits and checksums) in
trace order; these split the trace into *windows* of consecutive submissions (with the CPU memory
writes between them). Inside a window the policy picks an order that respects the happens-before
graph (`graph.HBGraph`): any order it yields is one the recorded program allowed, so a replay that
diverges under it has found a missing synchronization, not a replay artefact.

Policies (`--reorder`):

* ``recorded``     — trace order;
* ``serialize``    — trace order, one submission at a time: each must finish before the next is
  written (waits satisfied only by a later submission are not waited for);
* ``reverse``      — independent submissions in reverse: at each step the ready submission latest
  in trace order goes first;
* ``random``       — a random valid order, drawn with `--seed` (same seed, same order);
* ``delay:Q:N``    — queue Q (the recorded queue id) is held back: each of its submissions goes
  after the N-th submission of another queue that followed it (or at the end of its window), or
  as soon as something that depends on it must go.

CPU memory writes recorded before a submission are written before it, in trace order, whatever the
order of submissions (`engine.Replayer` does that).
"""
from __future__ import annotations

import bisect
import heapq
import random
from dataclasses import dataclass

from kfdtrace.errors import KfdtraceError
from kfdtrace.replay.graph import HBGraph
from kfdtrace.replay.plan import DATA_KINDS, Plan, Submission

POLICIES = ("recorded", "serialize", "reverse", "random", "delay:QUEUE:N")


@dataclass(frozen=True)
class Policy:
    name: str                 # recorded | serialize | reverse | random | delay
    queue: int | None = None  # delay: recorded queue id
    n: int = 0                # delay: how many submissions later

    def __str__(self) -> str:
        return f"delay:{self.queue}:{self.n}" if self.name == "delay" else self.name

    @property
    def reorders(self) -> bool:
        return self.name in ("reverse", "random", "delay")


def parse_policy(text: str) -> Policy:
    t = (text or "recorded").strip().lower()
    if t in ("recorded", "serialize", "reverse", "random"):
        return Policy(t)
    if t.startswith("delay:"):
        parts = t.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            q, n = int(parts[1], 0), int(parts[2], 0)
            if n < 0:
                raise ValueError
        except ValueError:
            raise KfdtraceError(f"--reorder {text!r}: expected delay:QUEUE:N with a queue id and a "
                                "count >= 0, e.g. delay:1:3") from None
        return Policy("delay", q, n)
    raise KfdtraceError(f"unknown reorder policy {text!r}; policies: {', '.join(POLICIES)}")


@dataclass
class Window:
    """Consecutive steps [start, end) of the plan holding submissions and CPU memory writes only."""
    start: int
    end: int
    subs: list[Submission]


def segments(plan: Plan):
    """Yield ("step", Step) for steps kept in trace order and ("window", Window) for the runs of
    submissions and CPU memory writes between them."""
    steps, i, n = plan.steps, 0, len(plan.steps)
    while i < n:
        st = steps[i]
        if st.kind != "submit" and st.kind not in DATA_KINDS:
            yield "step", st
            i += 1
            continue
        j, subs = i, []
        while j < n and (steps[j].kind == "submit" or steps[j].kind in DATA_KINDS):
            if steps[j].kind == "submit":
                subs.append(steps[j].sub)
            j += 1
        yield "window", Window(i, j, subs)
        i = j


def order_window(subs: list[Submission], graph: HBGraph, policy: Policy,
                 rng: random.Random | None = None) -> list[Submission]:
    """A topological order of `subs` (edges of `graph` inside the window) chosen by `policy`."""
    if not policy.reorders or len(subs) < 2:
        return list(subs)
    members = {s.index: k for k, s in enumerate(subs)}
    indeg = [0] * len(subs)
    succ: list[list[int]] = [[] for _ in subs]
    for k, s in enumerate(subs):
        for p in graph.preds[s.index]:
            j = members.get(p)
            if j is not None:
                indeg[k] += 1
                succ[j].append(k)
    if policy.name == "delay":
        # a held submission goes right after the N-th submission of another queue that follows it
        # in trace order (at the end of the window if there are fewer)
        others = [k for k, s in enumerate(subs) if s.queue.queue_id != policy.queue]
        key = []
        for k, s in enumerate(subs):
            if s.queue.queue_id != policy.queue or policy.n == 0:
                key.append(k)
                continue
            later = others[bisect.bisect_right(others, k):]
            key.append(later[policy.n - 1] + 0.5 if len(later) >= policy.n else len(subs) + k)
    elif policy.name == "reverse":
        key = [-k for k in range(len(subs))]
    else:
        key = None
    out: list[Submission] = []
    if key is None:                           # random: uniform choice among the ready ones
        rng = rng or random.Random(0)
        ready = [k for k in range(len(subs)) if indeg[k] == 0]
        while ready:
            k = ready.pop(rng.randrange(len(ready)))
            out.append(subs[k])
            for j in succ[k]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    ready.append(j)
    else:
        heap = [(key[k], k) for k in range(len(subs)) if indeg[k] == 0]
        heapq.heapify(heap)
        while heap:
            _, k = heapq.heappop(heap)
            out.append(subs[k])
            for j in succ[k]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    heapq.heappush(heap, (key[j], j))
    assert len(out) == len(subs), "happens-before edges inside a window form a cycle"
    return out


def check_order(order: list[Submission], graph: HBGraph) -> None:
    """Assert that `order` respects every edge between its members (used by tests and --explore)."""
    at = {s.index: k for k, s in enumerate(order)}
    for s in order:
        for p in graph.preds[s.index]:
            if p in at and at[p] > at[s.index]:
                raise AssertionError(f"submission #{p} must precede #{s.index}")


__all__ = ["Policy", "parse_policy", "segments", "order_window", "check_order", "Window", "POLICIES"]
