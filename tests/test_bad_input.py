"""Bad input gets a clear error and loses nothing: every command, fed what users really feed it
(damaged, truncated, foreign or missing traces; odd packet streams; wrong code objects; bad
options; scripts that crash, exit, fault, hang or are killed), ends with a short message that says
what and where, a non-zero exit status, no traceback, no hang — and what was already safe (a
partially written trace) stays readable."""
from __future__ import annotations

import asyncio
import builtins
import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from kfdtrace.cli import main as cli_main
from kfdtrace.errors import GpuFault, KfdError, KfdtraceError, WaitTimeout
from kfdtrace.trace import TraceReader, TraceWriter
from kfdtrace.trace import format as F

REPO = Path(__file__).resolve().parent.parent
TIMELINE = REPO / "traces" / "timeline.trace"          # gfx942: PM4 dispatches + SDMA
SDMA_COPY = REPO / "traces" / "sdma_copy.trace"        # gfx942: SDMA only
KERNELS = REPO / "kfdtrace" / "data" / "kernels"
ENV = dict(os.environ, KFDTRACE_BACKEND="emu", PYTHONPATH=str(REPO), KFDTRACE_EMU_GPUS="1")
ENV.pop("KFDTRACE_EMU_SEED", None)


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging (no pytest-timeout here)."""
    def expire(*_):
        raise TimeoutError(f"hung for more than {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cli(capsys, *argv: str, timeout: float = 20) -> tuple[int, str, str]:
    """Run `kfdtrace ARGV` in-process: (exit status, stdout, stderr); argparse errors included."""
    with deadline(timeout):
        try:
            rc = cli_main([str(a) for a in argv])
        except SystemExit as e:            # argparse usage errors
            rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return rc, out, err


def error_line(err: str, cmd: str) -> str:
    """The `kfdtrace CMD: error: ...` line of a short stderr (after argparse's usage lines, or
    before the list of valid values some messages add)."""
    lines = err.strip().splitlines()
    hits = [ln for ln in lines if ln.startswith(f"kfdtrace {cmd}: error: ")]
    assert len(hits) == 1 and len(lines) <= 12, err
    return hits[0]


# -- damaged, foreign and missing trace files ---------------------------------------------------------
def _make(kind: str, d: Path) -> Path:
    src = TIMELINE.read_bytes()
    p = d / f"{kind}.trace"
    if kind == "missing":
        return p
    if kind == "directory":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "not_a_trace":
        p.write_bytes((REPO / "README.md").read_bytes())
    elif kind == "newer_major":
        b = bytearray(src)
        F.PREAMBLE.pack_into(b, 0, F.MAGIC, F.FORMAT_MAJOR + 1, 0, 0)
        p.write_bytes(bytes(b))
    elif kind == "cut_in_header":
        p.write_bytes(src[:100])
    elif kind == "header_bitflip":
        b = bytearray(src)
        b[F.PREAMBLE.size + F.BLOCK.size + 40] ^= 0x10
        p.write_bytes(bytes(b))
    elif kind == "unreadable":
        p.write_bytes(src)
    return p


#: kind -> (phrases of the error, the byte offset it names or None)
BAD_TRACES = {
    "missing": (["cannot open: No such file or directory"], None),
    "directory": (["cannot open: a directory, not a trace file"], None),
    "fifo": (["cannot open: not a regular file"], None),
    "unreadable": (["cannot open: Permission denied"], None),
    "empty": (["file of 0 bytes is too short to be a kfdtrace trace"], 0),
    "not_a_trace": (["not a kfdtrace trace (magic b'# kfdtra'"], 0),
    "newer_major": ([f"trace format {F.FORMAT_MAJOR + 1}.0 is newer than this kfdtrace reads", "upgrade kfdtrace"], 8),
    "cut_in_header": (["truncated block: 12245 payload bytes claimed, 52 present"], 16),
    "header_bitflip": (["bad CRC in header block"], 16),
}
READERS = {
    "info": [],
    "dump": [],
    "export": ["-o", "{tmp}/out.json"],
    "replay": ["--backend", "emu", "--timeout", "3", "--no-progress"],
}


@pytest.fixture
def deny_reading(monkeypatch):
    """Make one path unreadable, as chmod 000 would for anyone but root (the tests run as root)."""
    denied: set[str] = set()
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *a, **kw):
        if os.fspath(path) in denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_os_open(path, *a, **kw)

    def b_open(path, *a, **kw):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) in denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", b_open)
    return denied


@pytest.mark.parametrize("kind", list(BAD_TRACES))
@pytest.mark.parametrize("cmd", list(READERS))
def test_a_bad_trace_is_one_line_naming_file_and_offset(capsys, tmp_path, deny_reading, cmd, kind):
    path = _make(kind, tmp_path)
    if kind == "unreadable":
        deny_reading.add(str(path))
    extra = [a.format(tmp=tmp_path) for a in READERS[cmd]]
    rc, out, err = cli(capsys, cmd, *extra, path, timeout=10)
    line = error_line(err, cmd)
    phrases, offset = BAD_TRACES[kind]
    assert rc == 2 and line.startswith(f"kfdtrace {cmd}: error: {path}: ")
    for ph in phrases:
        assert ph in line, line
    assert (f"at byte {offset}: " in line) == (offset is not None), line
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_a_refused_trace_never_closes_someone_elses_descriptor(tmp_path):
    """A reader that failed to open closed its descriptor; when the half-built reader is collected
    later (its error was kept, as pytest, a log or the TUI keep errors), it must not close that
    number again: by then the process has reopened it for something else (it was /dev/kfd)."""
    kept = []
    for kind in ("newer_major", "directory", "header_bitflip"):
        try:
            TraceReader(_make(kind, tmp_path))
        except KfdtraceError as e:
            kept.append(e)
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
    try:
        kept.clear()
        import gc
        gc.collect()
        for fd in fds:
            os.fstat(fd)                                  # EBADF if the collected readers closed it
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


VIEW_ERRORS = {   # `view` checks the file before it starts the terminal UI
    "missing": "cannot open: No such file or directory",
    "directory": "cannot open: a directory, not a trace file",
    "fifo": "cannot open: not a regular file, not a trace file",
    "unreadable": "cannot open: Permission denied",
    "empty": "at byte 0: not a kfdtrace trace (no KFDTRACE magic)",
    "not_a_trace": "at byte 0: not a kfdtrace trace (no KFDTRACE magic)",
}


@pytest.mark.parametrize("kind", list(VIEW_ERRORS))
def test_view_refuses_a_non_trace_before_the_ui_starts(capsys, tmp_path, deny_reading, kind):
    path = _make(kind, tmp_path)
    if kind == "unreadable":
        deny_reading.add(str(path))
    rc, out, err = cli(capsys, "view", path, timeout=10)
    assert rc == 2 and error_line(err, "view") == f"kfdtrace view: error: {path}: {VIEW_ERRORS[kind]}"


def _run_headless(monkeypatch):
    """`KfdtraceApp.run` replaced by a headless run that quits once the trace is open (or not)."""
    from tui.app import KfdtraceApp
    seen = {}

    def run(self):
        async def main():
            async with self.run_test(size=(120, 40)) as pilot:
                await self.workers.wait_for_complete()
                await pilot.pause()
                seen["banner"] = str(self.query_one("#banner").render())
        asyncio.run(main())
    monkeypatch.setattr(KfdtraceApp, "run", run)
    return seen


@pytest.mark.parametrize("kind", ["newer_major", "cut_in_header", "header_bitflip"])
def test_view_of_a_trace_it_cannot_open_shows_why_and_exits_2(capsys, tmp_path, monkeypatch, kind):
    path = _make(kind, tmp_path)
    seen = _run_headless(monkeypatch)
    rc, _, err = cli(capsys, "view", path)
    line = error_line(err, "view")
    assert rc == 2 and all(ph in line for ph in BAD_TRACES[kind][0]), line
    assert "cannot open the trace" in seen["banner"] and BAD_TRACES[kind][0][0] in seen["banner"]


REPORTS = {
    "truncated JSON": ('{"divergences": [', "not a JSON replay report: Expecting value: line 1 column 18 (char 17)"),
    "a number": ("42\n", "a replay report is a JSON object or list, not int"),
    "binary": (b"\xff\xfe", "not a JSON replay report: 'utf-8' codec can't decode byte 0xff"),
    "missing": (None, "replay report not found"),
}


@pytest.mark.parametrize("case", list(REPORTS))
def test_view_report_that_is_not_a_report(capsys, tmp_path, case):
    content, phrase = REPORTS[case]
    rp = tmp_path / "r.json"
    if isinstance(content, str):
        rp.write_text(content)
    elif content is not None:
        rp.write_bytes(content)
    rc, _, err = cli(capsys, "view", TIMELINE, "--report", rp)
    assert rc == 2 and error_line(err, "view").startswith(f"kfdtrace view: error: {rp}: {phrase}"), err


# -- what was safe stays readable ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> Path:
    """A synthetic workload in many small blocks, so cutting it leaves whole blocks before the cut."""
    from kfdtrace.trace.sample import SAMPLE_HEADER, write_workload
    p = tmp_path_factory.mktemp("chunked") / "w.trace"
    w = TraceWriter(p, SAMPLE_HEADER, chunk_bytes=2048, flush_interval=None)
    write_workload(w, 40)
    w.close()
    return p


def test_a_cut_trace_keeps_every_whole_block_for_every_reader(capsys, tmp_path, chunked):
    with TraceReader(chunked) as full:
        total, chunks = len(full), full.chunks
        keep = chunks[len(chunks) // 2]                     # cut inside this block's payload
    cut = tmp_path / "cut.trace"
    cut.write_bytes(chunked.read_bytes()[:keep.offset + F.BLOCK.size + 10])
    with TraceReader(cut) as r:
        assert r.recovered and len(r) == keep.first         # every record before the cut block
        assert [x.fields for x in r.records()] == [x.fields for x in TraceReader(chunked).records(stop=keep.first)]
    warning = (f"recovered {keep.first} record(s) by scanning, up to byte {keep.offset} of "
               f"{keep.offset + F.BLOCK.size + 10}; scanning stopped: at byte {keep.offset}: truncated block")
    rc, out, err = cli(capsys, "info", cut)
    assert rc == 0 and "recovered (no usable index)" in out and warning in err
    rc, out, err = cli(capsys, "dump", cut, "--no-packets")
    assert rc == 0 and len(out.strip().splitlines()) >= keep.first and warning in err
    rc, _, err = cli(capsys, "export", cut, "-o", tmp_path / "cut.json")
    assert rc == 0 and warning in err
    assert keep.first < total


def test_a_damaged_block_in_a_finalized_trace_names_its_offset(capsys, tmp_path, chunked):
    with TraceReader(chunked) as full:
        c = full.chunks[3]
    b = bytearray(chunked.read_bytes())
    b[c.offset + F.BLOCK.size + 5] ^= 0x01
    bad = tmp_path / "flip.trace"
    bad.write_bytes(bytes(b))
    rc, out, err = cli(capsys, "dump", bad, "--no-packets")
    assert rc == 2 and error_line(err, "dump") == f"kfdtrace dump: error: {bad}: at byte {c.offset}: bad CRC in records block"
    assert len(out.strip().splitlines()) >= c.first       # the records before it were printed


def test_replay_of_a_recovered_trace_says_so_and_of_an_empty_one_refuses(capsys, tmp_path):
    src = TIMELINE.read_bytes()
    with TraceReader(TIMELINE) as r:
        end = r.chunks[-1].offset
    tail_cut = tmp_path / "tail.trace"                   # the index is lost, every record kept
    tail_cut.write_bytes(src[:-40])
    rc, out, _ = cli(capsys, "replay", "--backend", "emu", "--no-progress", tail_cut)
    assert rc == 0 and "MATCHED" in out and "note: trace: no usable index" in out
    empty = tmp_path / "empty_body.trace"                # only the header survived
    empty.write_bytes(src[:end + 100])
    rc, _, err = cli(capsys, "replay", "--backend", "emu", "--no-progress", empty)
    line = error_line(err, "replay")
    assert rc == 2 and "nothing to replay: the trace holds no records" in line and "recovered 0 record(s)" in line


def rewrite(src: Path, dst: Path, gpu=None, record=None) -> None:
    """Copy a trace record by record (blobs too), with `gpu(entry)` / `record(rec, fields)`
    changing header GPU entries / record fields on the way: intact blocks, odd content."""
    with TraceReader(src) as r:
        header = {k: v for k, v in r.header.items() if k != "format"}
        for g in header.get("gpus", []):
            (gpu or (lambda g: None))(g)
        w = TraceWriter(dst, header, strict=False, flush_interval=None)

        def copy(v):
            if isinstance(v, F.BlobRef):
                return w.blob(r.blob(v))
            if isinstance(v, dict):
                return {k: copy(x) for k, x in v.items()}
            return [copy(x) for x in v] if isinstance(v, list) else v
        for rec in r.records():
            f = copy(dict(rec.fields))
            (record or (lambda rec, f: None))(rec, f)
            w.write(rec.kind, t=rec.t, tid=rec.tid, **f)
        w.close()


def test_replay_refuses_a_malformed_record_before_running_anything(capsys, tmp_path):
    """A trace whose blocks are intact but whose records are not what the recorder writes (another
    tool, a hand edit): refused, naming the record, before anything is submitted."""
    p = tmp_path / "odd.trace"
    with TraceReader(SDMA_COPY) as r:
        mmaps = [rec.n for rec in r.records(kinds="mmap")]
    rewrite(SDMA_COPY, p, record=lambda rec, f: f.update(prot="rw") if rec.n == mmaps[1] else None)
    rc, out, err = cli(capsys, "replay", "--backend", "emu", "--no-progress", p)
    assert rc == 2 and out == ""
    assert error_line(err, "replay") == (f"kfdtrace replay: error: {p}: record {mmaps[1]} (mmap) is malformed: "
                                         "mmap.prot: expected int, got str")


def test_a_trace_from_an_unknown_gpu_family_reads_but_does_not_replay(capsys, tmp_path):
    p = tmp_path / "alien.trace"
    rewrite(SDMA_COPY, p, gpu=lambda g: g.update(gfx="gfx9999", gfx_target_version=99999))
    rc, out, _ = cli(capsys, "dump", p, "--kind", "submit")
    assert rc == 0 and "COPY_LINEAR" in out
    rc, out, err = cli(capsys, "replay", "--backend", "emu", "--no-progress", "--force", p)
    assert rc == 2 and out == "" and error_line(err, "replay") == (
        f"kfdtrace replay: error: {p}: GPU 0x8173 of the trace: unknown GPU family 'gfx9999'; known: gfx900, "
        "gfx906, gfx908, gfx90a, gfx942, gfx950, gfx1030, gfx1031, gfx1032, gfx1034, gfx1100, gfx1101, gfx1102, "
        "gfx1103, gfx1150, gfx1151, gfx1152, gfx1200, gfx1201; its packets cannot be decoded or replayed by this kfdtrace")


# -- replay options and foreign traces ------------------------------------------------------------------
REPLAY_ERRORS = {
    "other family": (["--gpu", "gfx1100"], ["the trace was recorded on gfx942", "target GPU 0 is gfx1100",
                                            "pass --force to try anyway"]),
    "unknown family": (["--gpu", "gfx9999"], ["unknown GPU family 'gfx9999'; known: gfx900"]),
    "bad policy": (["--reorder", "bogus"], ["unknown reorder policy 'bogus'; policies: recorded"]),
    "delay spec": (["--reorder", "delay:x:y"], ["--reorder 'delay:x:y': expected delay:QUEUE:N"]),
    "delay queue": (["--reorder", "delay:99:1"], ["the trace has no submissions to queue 99 (queues with submissions: 0, 1, 2)"]),
    "inject kind": (["--inject", "bogus"], ["--inject 'bogus': unknown fault kind 'bogus'"]),
    "inject ioctl": (["--inject", "ioctl:NOPE:1:ENOMEM"], ["no KFD ioctl named 'NOPE'"]),
    "inject count": (["--inject", "ioctl:ALLOC_MEMORY_OF_GPU:999:ENOMEM"], ["the trace has 18 AMDKFD_IOC_ALLOC_MEMORY_OF_GPU calls"]),
    "inject errno": (["--inject", "ioctl:ALLOC_MEMORY_OF_GPU:2:EFOO"], ["unknown errno 'EFOO'"]),
    "inject sub": (["--inject", "drop-signal:999"], ["submission #999 does not exist", "has 9 submissions (#0..#8)"]),
    "drop wait": (["--unsafe-drop-wait", "999"], ["submission #999 does not exist"]),
    "json dir": (["--json", "/nonexistent/dir/r.json"], ["--json /nonexistent/dir/r.json: directory /nonexistent/dir does not exist"]),
    "timeout 0": (["--timeout", "0"], ["argument --timeout: must be a positive number of seconds, not 0"]),
    "timeout inf": (["--timeout", "inf"], ["argument --timeout: must be a positive number of seconds, not inf"]),
    "gpus 0": (["--gpus", "0"], ["argument --gpus: must be a positive number, not 0"]),
    "gpus x": (["--gpus", "x"], ["argument --gpus: must be a positive number, not x"]),
}


@pytest.mark.parametrize("case", list(REPLAY_ERRORS))
def test_replay_bad_options_are_refused_before_anything_runs(capsys, case):
    args, phrases = REPLAY_ERRORS[case]
    rc, out, err = cli(capsys, "replay", "--backend", "emu", "--no-progress", *args, TIMELINE)
    line = error_line(err, "replay")
    assert rc == 2 and out == "" and all(p in line for p in phrases), line


def test_replay_force_runs_a_foreign_trace_and_reports_the_fault_at_once(capsys):
    rc, out, _ = cli(capsys, "replay", "--backend", "emu", "--no-progress", "--gpu", "gfx1100", "--force", SDMA_COPY)
    assert rc == 0 and "MATCHED" in out and "recorded on gfx942" in out and "is gfx1100" in out and "(--force)" in out, out
    # gfx942 machine code on a gfx1100: the shader faults; the replay says where, without waiting
    # for its 10 s watchdog (the HW-exception event carries the fault)
    rc, out, err = cli(capsys, "replay", "--backend", "emu", "--no-progress", "--gpu", "gfx1100", "--force", TIMELINE)
    head, *rest = out.splitlines()
    assert rc == 2 and head.endswith(": ERROR") and "HANG" not in out
    assert "GPU hardware exception on gpu_id" in out and "queue 1 (pm4) stopped in submission #4" in out
    assert "unsupported instruction at PC" in out and "DISPATCH_DIRECT" in out
    secs = float(rest[0].split(" in ")[1].split(" s")[0])
    assert secs < 3, rest[0]


# -- raw packets ------------------------------------------------------------------------------------------
DECODE = {   # name: (file bytes, extra args, exit status, stderr)
    "odd bytes": (b"\x01\x02\x03", [], 2, "error: {f}: 3 bytes is not a whole number of dwords"),
    "bad hex": (b"c0001000 zz\n", [], 2, "error: {f}, line 1: 'zz' is not a hex dword"),
    "unknown gpu": (b"0\n", ["--gpu", "gfx9999"], 2, "error: unknown GPU family 'gfx9999'"),
    "empty": (b"", [], 2, "error: {f}: no packets: the input holds no dwords"),
    "comments only": (b"# nothing here\n", [], 2, "error: {f}: no packets: the input holds no dwords"),
    "truncated pm4": (b"c0031000\n", [], 1, "{f}: 1 of 1 packets not decoded; first at dword 0: TRUNCATED: "
                                             "NOP needs 5 dwords, only 1 left"),
    "truncated aql": ((REPO / "traces" / "example.aql.bin").read_bytes()[:84], ["--engine", "aql"], 1,
                      "{f}: 1 of 2 packets not decoded; first at byte 64: TRUNCATED: AQL packet needs 16 dwords, only 5 left"),
    "unknown sdma": (b"ffffffff\n", ["--engine", "sdma", "--gpu", "gfx942"], 1,
                     "{f}: 1 of 1 packets not decoded; first at dword 0: UNKNOWN: unknown SDMA op 255 sub-op 255"),
}


@pytest.mark.parametrize("case", list(DECODE))
def test_decode_bad_input(capsys, tmp_path, case):
    data, extra, status, message = DECODE[case]
    f = tmp_path / "in.bin"
    f.write_bytes(data)
    engine = [] if "--engine" in extra else ["--engine", "pm4"]
    rc, out, err = cli(capsys, "decode", *engine, *extra, f)
    assert rc == status and err.strip().splitlines()[-1].startswith(f"kfdtrace decode: {message.format(f=f)}"), err
    assert len(err.strip().splitlines()) == 1
    if status == 1:        # what could be decoded is printed, the bad packet flagged where it is
        assert "!! " in out
    else:
        assert out == ""


# -- code objects -----------------------------------------------------------------------------------------
def _code(kind: str, d: Path) -> Path:
    good = (KERNELS / "kernels-gfx942-O2.hsaco").read_bytes()
    p = d / f"{kind}.hsaco"
    if kind == "gfx1201":
        return KERNELS / "kernels-gfx1201-O2.hsaco"
    p.write_bytes({"not_elf": b"#!/bin/sh\necho hi\n" * 10, "truncated_header": good[:40],
                   "truncated": good[:3000],
                   "wrong_machine": good[:18] + (62).to_bytes(2, "little") + good[20:]}.get(kind, b""))
    return p


DISASM = {
    "not_elf": "not an ELF file (starts with b'#!/b')",
    "truncated_header": "truncated: 40 bytes, the ELF header alone is 64",
    "truncated": "truncated: program header 1 (at 0x78) maps file bytes 0x0...0x3360, the file has 3000",
    "wrong_machine": "wrong machine: e_machine 62 at byte 18, expected EM_AMDGPU (224)",
    "gfx1201": "no instruction tables for gfx1201 (the disassembler covers gfx942/gfx950 and gfx11xx)",
}


@pytest.mark.parametrize("kind", list(DISASM))
def test_disasm_bad_code_objects(capsys, tmp_path, kind):
    p = _code(kind, tmp_path)
    rc, out, err = cli(capsys, "disasm", p)
    assert rc == 2 and out == "" and error_line(err, "disasm") == f"kfdtrace disasm: error: {p}: {DISASM[kind]}"


def test_disasm_missing_file_and_unknown_kernel(capsys, tmp_path):
    rc, _, err = cli(capsys, "disasm", tmp_path / "nope.co")
    assert rc == 2 and error_line(err, "disasm").endswith("nope.co: cannot read code object: No such file or directory")
    rc, _, err = cli(capsys, "disasm", KERNELS / "kernels-gfx942-O2.hsaco", "--kernel", "nope")
    assert rc == 2 and "no kernel 'nope' (kernels: vector_add, saxpy" in error_line(err, "disasm")


# -- the driver API -----------------------------------------------------------------------------------------
@pytest.fixture
def dev(capsys):
    from kfdtrace.driver import open_device
    with open_device(0, backend="emu", gpu="gfx942") as d:
        yield d
    assert "leaks" not in capsys.readouterr().err        # nothing a failed call allocated was left behind


def _freed(dev):
    b = dev.alloc(4096, "gtt")
    b.free()
    return b


DRIVER = {   # name: (call, error class, message)
    "alloc size 0": (lambda d: d.alloc(0), KfdtraceError, "allocation size must be a positive number of bytes, got 0"),
    "alloc size float": (lambda d: d.alloc(4096.5), KfdtraceError, "allocation size must be a positive number of bytes, got 4096.5"),
    "alloc unknown kind": (lambda d: d.alloc(4096, "sram"), KfdtraceError, "unknown memory kind 'sram': use vram, gtt or host"),
    "wrong-family code object": (lambda d: d.load_program(KERNELS / "kernels-gfx1100-O2.hsaco"), KfdtraceError,
                                 "code object is for gfx1100, but gfx942#0 is gfx942"),
    "freed buffer view": (lambda d: _freed(d).view(), KfdtraceError, "was freed"),
    "copy from a freed buffer": (lambda d: d.sdma_queue().copy(d.alloc(4096, "gtt"), _freed(d), 4096), KfdtraceError,
                                 "SDMA copy src: <Buffer gtt 0x1000 bytes at"),
    "copy past the end": (lambda d: d.sdma_queue().copy(d.alloc(4096, "gtt"), d.alloc(4096, "gtt"), 8192), KfdtraceError,
                          "SDMA copy dst: bytes [0x0, 0x2000) are outside <Buffer gtt 0x1000 bytes"),
    "fill size 0": (lambda d: d.sdma_queue().fill(d.alloc(4096, "gtt"), 0, 0), KfdtraceError,
                    "SDMA fill size must be a positive number of bytes, got 0"),
    "dispatch a freed buffer": (lambda d: d.compute_queue().dispatch(
        d.load_program(KERNELS / "kernels-gfx942-O2.hsaco")["saxpy"], grid=1, block=64, args=(2.0, _freed(d), _freed(d), 16)),
        KfdtraceError, "kernel saxpy: argument 1 is <Buffer gtt 0x1000 bytes at"),
    "queue on a missing engine": (lambda d: d.sdma_queue(engine=99), KfdError,
                                  "AMDKFD_IOC_CREATE_QUEUE failed: EINVAL (Invalid argument)"),
    "unknown ioctl name": (lambda d: d.proc.ioctl("NOPE"), KfdtraceError, "no KFD ioctl named 'NOPE'"),
    "misspelt ioctl field": (lambda d: d.proc.ioctl("GET_VERSION", major=1), KfdtraceError,
                             "AMDKFD_IOC_GET_VERSION has no field 'major'; its fields: major_version, minor_version"),
}


@pytest.mark.parametrize("case", list(DRIVER))
def test_driver_bad_arguments(dev, case):
    call, cls, message = DRIVER[case]
    with deadline(10), pytest.raises(cls) as e:
        call(dev)
    assert message in str(e.value)


def test_gpu_page_fault_names_address_queue_and_packet(dev):
    dst = dev.alloc(4096, "gtt")
    q, t = dev.sdma_queue(), dev.timeline()
    q.copy(dst, 0x7000_0000_0000, 4096)                   # an unmapped source
    q.signal(t, 1)
    with deadline(10), pytest.raises(GpuFault) as e:
        t.wait(1, timeout=5)
    assert e.value.address == 0x7000_0000_0000
    assert ("at address 0x700000000000 (NotPresent)" in str(e.value) and "queue sdma0" in str(e.value)
            and "stuck at COPY_LINEAR src_addr=0x700000000000" in str(e.value))


def test_a_full_ring_on_a_faulted_queue_reports_the_fault_not_a_timeout(dev):
    dst = dev.alloc(4096, "gtt")
    q = dev.sdma_queue(ring_size=1024)
    q.copy(dst, 0x7000_0000_0000, 4096)                   # the engine stops here: the ring never drains
    with deadline(5), pytest.raises(GpuFault) as e:      # not WaitTimeout after RING_TIMEOUT (10 s)
        for _ in range(100):
            q.fill(dst, 0, 4096)
    assert "at address 0x700000000000 (NotPresent)" in str(e.value) and "stuck at COPY_LINEAR" in str(e.value)


def test_gpu_queue_error_is_reported_at_once_naming_queue_and_packet(dev):
    from kfdtrace.packets import pm4
    cq, t2 = dev.compute_queue(), dev.timeline()
    cq.submit_dwords([pm4.header(0xEE, 1), 0, 0])        # a packet the CP does not know: a queue error
    cq.signal(t2, 1)
    with deadline(4), pytest.raises(GpuFault) as e:      # at once, from the HW-exception event
        t2.wait(1, timeout=30)
    assert "HW exception" in str(e.value) and "queue pm40" in str(e.value) and "unknown PM4 opcode 0xee" in str(e.value)


def test_a_wait_nothing_signals_times_out_naming_queue_packet_address_value(dev):
    q, t, never = dev.sdma_queue(), dev.timeline(), dev.timeline()
    q.wait(never, 7)
    q.signal(t, 1)
    with deadline(10), pytest.raises(WaitTimeout) as e:
        t.wait(1, timeout=0.5)
    msg = str(e.value)
    assert f"waiting for timeline@{t.address:#x} (value at {t.value_addr:#x}) >= 1; last value seen 0" in msg
    assert "queue sdma0 (id 0, gfx942#0)" in msg and "stuck at POLL_REGMEM" in msg
    assert f"addr={never.value_addr:#x} value=7" in msg and f"memory at {never.value_addr:#x} now holds 0x0" in msg


# -- record: scripts that crash, exit, fault, hang or are killed ---------------------------------------------
SCRIPTS = {
    "raises": "raise ValueError('boom in the script')\n",
    "exit3": "import sys; sys.exit(3)\n",
    "fault": "q, t = dev.sdma_queue(), dev.timeline()\nq.copy(buf, 0x700000000000, 4096)\nq.signal(t, 1)\nt.wait(1, timeout=5)\n",
    "hang": "q, t, never = dev.sdma_queue(), dev.timeline(), dev.timeline()\nq.wait(never, 1)\nq.signal(t, 1)\n"
            "t.wait(1, timeout=1)\n",
    "killed": "import os, signal, time\nkfdtrace.mark('before the kill')\ntime.sleep(0.8)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n",
}
PRELUDE = ("import kfdtrace\nfrom kfdtrace.driver import open_device\ndev = open_device()\n"
           "buf = dev.alloc(4096, 'gtt')\nbuf.view()[:] = 7\n")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Every script recorded by `kfdtrace record` in its own process, all at once."""
    d = tmp_path_factory.mktemp("rec")
    procs = {}
    for name, body in {**SCRIPTS, "missing": None}.items():
        script = d / f"{name}.py"
        if body is not None:
            script.write_text(PRELUDE + body)
        procs[name] = subprocess.Popen([sys.executable, "-m", "kfdtrace.cli", "record", "-o", str(d / f"{name}.trace"),
                                        str(script)], env=ENV, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    out = {}
    for name, p in procs.items():
        try:
            o, e = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
            e += "\n<hung>"
        out[name] = (p.returncode, o, e, d / f"{name}.trace", d / f"{name}.py")
    return out


RECORD = {   # name: (exit status, trace status, the last lines of stderr (phrases))
    "missing": (2, None, ["kfdtrace record: error: cannot record {script}: no such file"]),
    "raises": (1, "error", ["ValueError: boom in the script", "kfdtrace record: ", "-> {trace} (error)"]),
    "exit3": (3, "finalized", ["kfdtrace record: ", "-> {trace} (finalized)"]),
    "fault": (1, "error", ["kfdtrace record: fault.py, line 9: GpuFault: GPU memory fault on gfx942#0",
                           "at address 0x700000000000 (NotPresent)", "stuck at COPY_LINEAR", "-> {trace} (error)"]),
    "hang": (1, "error", ["kfdtrace record: hang.py, line 9: WaitTimeout: timed out after 1s waiting for timeline@",
                          "queue sdma0 (id 0, gfx942#0) rptr=0 wptr=", "stuck at POLL_REGMEM", "value=1",
                          "-> {trace} (error)"]),
    "killed": (-signal.SIGKILL, None, []),
}


@pytest.mark.parametrize("name", list(RECORD))
def test_record_a_script_that_ends_badly(recorded, capsys, name):
    rc, out, err, trace, script = recorded[name]
    status, trace_status, phrases = RECORD[name]
    assert rc == status, err
    text = err.replace(str(trace), "{trace}").replace(str(script), "{script}")
    pos = 0
    for ph in phrases:                                    # in this order
        i = text.find(ph, pos)
        assert i >= 0, (ph, err)
        pos = i
    assert "<hung>" not in err
    # no kfdtrace frames: the script's own traceback (a bug in the script) or none at all
    assert "kfdtrace/" not in err.replace(str(trace), "").replace(str(script), "") and "runpy" not in err
    if name in ("fault", "hang", "missing", "exit3"):
        assert "Traceback" not in err
    if name == "missing":
        assert not trace.exists()
        return
    with TraceReader(trace) as t:
        if name == "killed":                             # never finalized: recovered, nothing lost
            assert t.recovered and not t.finalized
            assert [m["label"] for m in t.records(kinds="marker")] == ["before the kill"]
            assert t.counts["alloc"] >= 1 and t.counts["open"] >= 1
        else:
            assert t.finalized and t.status == trace_status and t.exit_status == status
        if trace_status == "error":
            (e,) = t.records(kinds="error")
            assert "Traceback" in e["text"]               # the whole story is kept in the trace
    rc, out, err2 = cli(capsys, "info", trace)
    assert rc == 0 and ("recovered" in out if name == "killed" else f"{trace_status} (exit status {status})" in out)
