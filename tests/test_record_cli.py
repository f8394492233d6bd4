"""`kfdtrace record` as users run it: a subprocess on the emulated GPU, and every way a script
can end (normal exit, sys.exit(n), an exception, SIGTERM, SIGKILL)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from kfdtrace.cli import main as cli_main
from kfdtrace.trace import TraceReader

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import make_sample_traces  # noqa: E402

ENV = dict(os.environ, KFDTRACE_BACKEND="emu", PYTHONPATH=str(REPO), KFDTRACE_EMU_GPUS="1")
ENV.pop("KFDTRACE_EMU_SEED", None)

WORKLOAD = """
import sys, time
import numpy as np
import kfdtrace
from kfdtrace.driver import open_device

dev = open_device()
a, b = dev.alloc(4096, "gtt"), dev.alloc(4096, "vram")
a.view(np.uint32)[:] = 7
q, t = dev.sdma_queue(), dev.timeline()
for i in range(1, 6):
    q.copy(b, a, 4096)
    q.signal(t, i)
    t.wait(i)
kfdtrace.mark("work done")
"""


def record_cmd(script: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "kfdtrace.cli", "record", "-o", str(out), str(script), *args]


def write_script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "script.py"
    p.write_text(WORKLOAD + textwrap.dedent(body))
    return p


def test_exit_status_args_and_header(tmp_path):
    script = write_script(tmp_path, """
        assert sys.argv[1:] == ["--n", "3"], sys.argv
        dev.close()
        sys.exit(3)
        """)
    out = tmp_path / "s.trace"
    r = subprocess.run(record_cmd(script, out, "--n", "3"), env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "kfdtrace record:" in r.stderr and "10 submissions" in r.stderr
    with TraceReader(out) as t:
        assert t.finalized and t.status == "finalized" and t.exit_status == 3
        h = t.header
        assert h["script"]["path"] == str(script) and h["script"]["args"] == ["--n", "3"]
        assert len(h["script"]["sha256"]) == 64 and h["argv"][:2] == ["kfdtrace", "record"]
        assert [m["label"] for m in t.records(kinds="marker")] == ["work done"]
        assert t.counts["submit"] == 10 and t.counts["wait"] == 5


def test_script_that_raises_leaves_a_finalized_trace_and_exit_status_1(tmp_path):
    script = write_script(tmp_path, """
        raise ValueError("boom at the end")
        """)
    out = tmp_path / "e.trace"
    r = subprocess.run(record_cmd(script, out), env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert "ValueError: boom at the end" in r.stderr and "runpy" not in r.stderr
    with TraceReader(out) as t:
        assert t.finalized and t.status == "error" and t.exit_status == 1
        (err,) = t.records(kinds="error")
        assert err["type"] == "ValueError" and "boom at the end" in err["text"]
        assert t.counts["submit"] == 10


def test_default_output_name_is_the_script_stem(tmp_path):
    script = tmp_path / "tiny_job.py"
    script.write_text("print('hello from the script')\n")
    r = subprocess.run([sys.executable, "-m", "kfdtrace.cli", "record", str(script)], env=ENV,
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "hello from the script\n"
    with TraceReader(tmp_path / "tiny_job.trace") as t:
        assert t.finalized and t.header["backend"] == "emu"


def _start_and_wait_ready(tmp_path: Path, body: str, out: Path) -> subprocess.Popen:
    script = write_script(tmp_path, body)
    p = subprocess.Popen(record_cmd(script, out), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=tmp_path)
    line = p.stdout.readline()
    assert line.strip() == "READY", p.stderr.read()
    return p


def test_sigterm_finalizes_the_trace(tmp_path):
    out = tmp_path / "t.trace"
    p = _start_and_wait_ready(tmp_path, """
        print("READY", flush=True)
        time.sleep(60)
        """, out)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == -signal.SIGTERM
    with TraceReader(out) as t:
        assert t.finalized and t.status == "terminated"
        assert t.counts["submit"] == 10 and t.counts["marker"] == 1


def test_sigkill_midway_is_recovered_by_info(tmp_path):
    out = tmp_path / "k.trace"
    p = _start_and_wait_ready(tmp_path, """
        print("READY", flush=True)
        while True:                      # keep submitting until killed
            i += 1
            q.copy(b, a, 4096)
            q.signal(t, i)
            t.wait(i)
        """, out)
    time.sleep(1.2)                      # > flush_interval: the timer flushes what was written
    p.kill()
    assert p.wait(timeout=20) == -signal.SIGKILL
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli_main(["info", str(out)]) == 0
    text = buf.getvalue()
    assert "recovered" in text and "submit" in text
    with TraceReader(out) as t:
        assert t.recovered and not t.finalized
        assert t.counts["submit"] > 10 and t.counts["marker"] == 1
        assert [r["label"] for r in t.records(kinds="marker")] == ["work done"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Every example recorded by `kfdtrace record` in its own process, all at once."""
    return make_sample_traces.record_all(list(make_sample_traces.SAMPLES), str(tmp_path_factory.mktemp("ex")))


@pytest.mark.parametrize("name", list(make_sample_traces.SAMPLES))
def test_each_example_records_on_the_emulated_gpu(examples, name):
    """Each example (sizes shrunk as for the sample traces) passes under recording, its trace is
    finalized, and every submitted packet decodes."""
    rc, path, output = examples[name]
    assert rc == 0, f"{name} failed under kfdtrace record:\n{output}"
    assert f"{name}: OK" in output
    assert make_sample_traces.check(path) == []
    with TraceReader(path) as t:
        assert t.status == "finalized" and t.exit_status == 0
        assert t.counts["submit"] > 0 and t.counts["wait"] > 0 and t.counts.get("checksum", 0) > 0
        assert [m["label"] for m in t.records(kinds="marker")][0].startswith(f"example {name}")
