"""Replay: re-execute a trace on a live GPU or the emulated one, exactly as recorded or perturbed
(reordered submissions, injected faults), and say whether the GPU did what it did when recorded.

    from kfdtrace.replay import replay, explore
    report = replay("bug.trace", backend="emu")                # faithful
    report = replay("bug.trace", policy="random", seed=7)     # a reordering
    report = replay("bug.trace", inject=["drop-signal:3"])     # a fault
    print(report.text()); report.exit_status                   # 0 matched, 1 diverged, 2 error/hang

Modules: `plan` (the trace as steps and submissions, validation), `graph` (happens-before),
`schedule` (reorder policies), `inject` (fault specs), `remap` (kernel-assigned ids), `engine`
(the replayer), `report` (findings, text, JSON). User documentation: docs/replay.md.
"""
from __future__ import annotations

from kfdtrace.errors import KfdtraceError
from kfdtrace.replay.engine import Options, Replayer, check_compat
from kfdtrace.replay.graph import HBGraph
from kfdtrace.replay.inject import SPEC_HELP, parse_specs
from kfdtrace.replay.plan import Plan, ReplayRefused
from kfdtrace.replay.report import Report
from kfdtrace.replay.schedule import parse_policy

DEFAULT_MACHINE = 1     # the emulated target presents itself as another machine than the recorder's


def load(path) -> Plan:
    from kfdtrace.trace import TraceReader
    return Plan(TraceReader(path))


def open_target(plan: Plan, backend: str | None = None, gpu: str | None = None, gpus: int | None = None,
                seed: int | None = None, machine: int = DEFAULT_MACHINE):
    """The port to replay on: the host GPU, or an emulated machine that by default has the
    trace's GPUs (families and count) but another machine's gpu_ids and handles."""
    from kfdtrace.port import resolve_backend
    b = resolve_backend(backend)
    if b == "auto":
        from kfdtrace.port.host import host_kfd_available
        b = "kfd" if host_kfd_available() else "emu"
    if b == "kfd":
        from kfdtrace.port.host import HostPort
        return HostPort()
    from kfdtrace.emu import EmulatedPort
    if gpu:
        fams = [g.strip() for g in gpu.split(",") if g.strip()]
        if len(fams) == 1:
            fams = fams * (gpus or max(1, len(plan.gpus)))
    else:
        fams = plan.family_names() or ["gfx942"]
        if gpus:
            fams = (fams * gpus)[:gpus]
    return EmulatedPort(gpu=fams, seed=seed, machine=machine)


def replay(trace, *, port=None, backend: str | None = None, gpu: str | None = None, gpus: int | None = None,
           seed: int | None = None, machine: int = DEFAULT_MACHINE, policy: str = "recorded",
           timeout: float = 10.0, inject=(), drop_waits=(), force: bool = False, progress: bool = False,
           locate: bool = True, capture: dict | None = None) -> Report:
    """Replay `trace` (a path or a loaded Plan). With `port` the replay drives that port (not shut
    down afterwards); otherwise it opens the target (`open_target`) and shuts it down. Refusals
    (incompatible GPU, a packet outside every allocation, an address range in use) raise
    ReplayRefused before anything is submitted."""
    if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
        raise KfdtraceError(f"the replay timeout must be a positive number of seconds, not {timeout!r}")
    plan = trace if isinstance(trace, Plan) else load(trace)
    if len(plan.reader) == 0:
        why = f" ({plan.reader.warnings[0]})" if plan.reader.warnings else ""
        raise ReplayRefused(f"{plan.path}: nothing to replay: the trace holds no records{why}")
    for s in drop_waits:
        plan.submission(s)
    graph = HBGraph(plan, drop_waits)
    pol = parse_policy(policy)
    if pol.name == "delay" and all(sub.queue.queue_id != pol.queue for sub in plan.submissions):
        have = sorted({sub.queue.queue_id for sub in plan.submissions})
        raise KfdtraceError(f"--reorder {pol}: the trace has no submissions to queue {pol.queue} "
                            f"(queues with submissions: {', '.join(map(str, have)) or 'none'})")
    own = port is None
    parse_specs(inject, plan, port.backend if port is not None else _backend_name(backend))
    plan.validate()
    if own:
        port = open_target(plan, backend, gpu, gpus, seed, machine)
    faults = parse_specs(inject, plan, port.backend)
    report = Report(str(plan.path), backend=port.backend, target=port.describe(), policy=str(pol), seed=seed,
                    submissions=len(plan.submissions), recorded_on=", ".join(plan.family_names()))
    report.faults = faults
    for w in plan.reader.warnings:          # e.g. a recovered trace: say what the replay is missing
        report.note(f"trace: {w}")
    opts = Options(policy=pol, seed=seed, timeout=timeout, faults=faults, drop_waits=list(drop_waits),
                   force=force, progress=progress, capture=capture)
    replayer = Replayer(plan, graph, port, opts, report)
    try:
        replayer.run()
        report._snapshots = replayer.snapshots
    finally:
        if own:
            port.shutdown()
    perturbed = pol.name != "recorded" or faults or drop_waits or (seed is not None and port.backend == "emu")
    if locate and perturbed and any(d.get("checksum_record") is not None and d.get("first_offset") is None
                                     for d in report.divergences):
        _locate(plan, report, backend if own else port.backend, gpu, gpus, machine, timeout, force)
    report.settle_faults()
    return report


def _backend_name(backend: str | None) -> str | None:
    from kfdtrace.port import resolve_backend
    b = resolve_backend(backend)
    return None if b == "auto" else b


def _locate(plan: Plan, report: Report, backend, gpu, gpus, machine, timeout, force) -> None:
    """Find the first differing byte of each buffer that diverged in a perturbed replay: replay the
    trace faithfully once more, keep those buffers' contents at the same checkpoints, and — where
    the faithful replay matches the recording's checksum there, so its bytes are the recorded ones
    — compare byte by byte."""
    wanted = {d["checksum_record"]: None for d in report.divergences if d.get("checksum_record") is not None}
    snaps = getattr(report, "_snapshots", {})
    if not wanted or not snaps:
        return
    try:
        ref = replay(plan, backend=backend, gpu=gpu, gpus=gpus, machine=machine, timeout=timeout, force=force,
                     locate=False, capture=wanted)
    except KfdtraceError as e:
        report.note(f"could not locate the differing bytes: the reference replay failed: {e}")
        return
    bad_ref = {d.get("checksum_record") for d in ref.divergences}
    for d in report.divergences:
        n = d.get("checksum_record")
        mine, theirs = snaps.get(n), wanted.get(n)
        if n is None or mine is None or theirs is None or n in bad_ref or len(mine) != len(theirs):
            continue
        diff = _first_diff(mine, theirs)
        if diff is None:
            continue
        count = sum(a != b for a, b in zip(memoryview(mine).cast("B"), memoryview(theirs).cast("B"))) \
            if len(mine) <= 1 << 22 else None
        d["first_offset"] = diff
        d["first_address"] = d["buffer"] + diff
        d["differing_bytes"] = count
        d["replay_bytes"] = mine[diff:diff + 16].hex()
        d["recorded_bytes"] = theirs[diff:diff + 16].hex()
        writers = [w for w in d.get("writers", []) if _covers(plan, w, d["buffer"] + diff)]
        d["message"] += (f"; first differing byte at offset {diff:#x} (address {d['buffer'] + diff:#x}): "
                         f"{mine[diff:diff + 8].hex()} here, {theirs[diff:diff + 8].hex()} recorded"
                         + (f"; {count} bytes differ" if count is not None else "")
                         + (f"; it appeared after submission #{writers[-1]}, which writes there" if writers else ""))
        if writers:
            d["appeared_after"] = writers[-1]
    report.note("differing bytes located against a faithful reference replay whose checksums match the "
                "recording at those checkpoints")


def _first_diff(a: bytes, b: bytes) -> int | None:
    import numpy as np
    x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
    nz = np.flatnonzero(x != y)
    return int(nz[0]) if len(nz) else None


def _covers(plan: Plan, index: int, addr: int) -> bool:
    sub = plan.submissions[index]
    if any(p.name in ("DISPATCH_DIRECT", "DISPATCH_INDIRECT", "KERNEL_DISPATCH") for p in sub.packets):
        return True
    return any(a.mode == "w" and a.addr <= addr < a.addr + a.size for a in sub.accesses)


def explore(trace, runs: int, *, start: int = 0, backend: str | None = None, gpu: str | None = None,
            gpus: int | None = None, machine: int = DEFAULT_MACHINE, timeout: float = 10.0,
            force: bool = False, on_result=None) -> dict:
    """Replay `runs` seeded schedules (a random valid submission order and, on the emulated GPU,
    the engine schedule seed, both from the seed) after one faithful baseline; return the seeds
    whose results differ from the recording, each with the command that re-runs it."""
    plan = trace if isinstance(trace, Plan) else load(trace)
    base = replay(plan, backend=backend, gpu=gpu, gpus=gpus, machine=machine, timeout=timeout, force=force,
                  locate=False)
    results = []
    for seed in range(start, start + runs):
        r = replay(plan, backend=backend, gpu=gpu, gpus=gpus, seed=seed, machine=machine, policy="random",
                   timeout=timeout, force=force, locate=False)
        ent = {"seed": seed, "status": r.status, "exit_status": r.exit_status, "order": r.order,
               "findings": [f["message"].split("\n")[0] for f in r.findings],
               "command": _command(plan.path, seed, backend, gpu, gpus, timeout, force)}
        results.append(ent)
        if on_result is not None:
            on_result(ent)
    diverging = [e for e in results if e["status"] != "matched"]
    return {"trace": plan.path, "baseline": base.status, "baseline_findings": [f["message"] for f in base.findings],
            "runs": results, "diverging": [e["seed"] for e in diverging],
            "commands": [e["command"] for e in diverging]}


def _command(path, seed, backend, gpu, gpus, timeout, force) -> str:
    parts = ["kfdtrace", "replay", path, "--reorder", "random", "--seed", str(seed)]
    if backend:
        parts += ["--backend", backend]
    if gpu:
        parts += ["--gpu", gpu]
    if gpus:
        parts += ["--gpus", str(gpus)]
    if force:
        parts.append("--force")
    return " ".join(parts)


__all__ = ["replay", "explore", "load", "open_target", "Report", "Plan", "HBGraph", "ReplayRefused",
           "check_compat", "SPEC_HELP", "DEFAULT_MACHINE"]
