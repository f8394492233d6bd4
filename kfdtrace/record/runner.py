"""Run a Python script under recording, as `kfdtrace record script.py args...` does.

The script runs in this process as `__main__` (runpy), with `sys.argv = [script, *args]` and its
directory first on `sys.path`, exactly as `python script.py args...` would run it; every port it
opens is wrapped by the recording port. The trace is finalized however the script ends: normal
exit or `sys.exit(n)` (its status), an exception (an `error` record with the traceback, status
"error", exit status 1; a kfdtrace error — GPU fault, wait timeout, failed ioctl — is printed as
one line naming the script's line, any other exception as Python prints it), Ctrl-C
("interrupted", 130), SIGTERM ("terminated", via the writer's `finalize_on_exit`, after which the
process dies of the signal as it would have). A process
killed outright (SIGKILL) leaves an unfinalized file that the reader recovers up to its last
flushed block (flushes happen by size and every `flush_interval` seconds).
"""
from __future__ import annotations

import os
import runpy
import sys
import traceback

from kfdtrace.errors import KfdtraceError
from kfdtrace.record.recorder import Recorder


def default_output(script: str) -> str:
    """`<script stem>.trace` in the current directory."""
    return os.path.splitext(os.path.basename(script))[0] + ".trace"


def _script_traceback(e: BaseException) -> str:
    """The traceback as Python would print it for the script: without this module's and
    runpy's frames."""
    tb = e.__traceback__
    skip = {__file__, runpy.__file__, "<frozen runpy>"}
    while tb is not None and tb.tb_frame.f_code.co_filename in skip:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


def _script_location(e: BaseException) -> str:
    """`file, line N: ` of the innermost frame outside kfdtrace itself: where the script (or a
    module of its own) made the call that failed."""
    pkg = os.path.dirname(os.path.abspath(__file__ + "/.."))
    where = ""
    for frame, lineno in traceback.walk_tb(e.__traceback__):
        name = frame.f_code.co_filename
        if name.startswith("<") or name == runpy.__file__ or os.path.abspath(name).startswith(pkg + os.sep):
            continue
        rel = os.path.relpath(name)
        where = f"{name if rel.startswith('..') else rel}, line {lineno}: "
    return where


def _exit_code(e: SystemExit) -> int:
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code
    print(code, file=sys.stderr)           # what the interpreter does with sys.exit("message")
    return 1


def run_script(script: str, args: list[str] | tuple = (), *, output: str | None = None,
               argv: list[str] | None = None, codec: str = "zlib", flush_interval: float = 0.5,
               memtrack: str | None = None, quiet: bool = False, on_signals: bool = True) -> tuple[int, dict]:
    """Record `script` run with `args`. Returns (the script's exit status, the recorder's summary).
    `on_signals` installs the finalize-on-SIGINT/SIGTERM/exit handlers (main thread only)."""
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        why = "it is a directory, not a Python script" if os.path.isdir(path) else "no such file"
        raise KfdtraceError(f"cannot record {script}: {why}")
    out = output or default_output(script)
    rec = Recorder(out, argv=argv, script=path, script_args=list(args), codec=codec,
                   flush_interval=flush_interval, memtrack=memtrack)
    rec.start()
    if on_signals:
        rec.finalize_on_exit()
    rec.install()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(path))
    status, code = "finalized", 0
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        code = _exit_code(e)
    except KeyboardInterrupt:
        status, code = "interrupted", 130
        print(f"kfdtrace record: {script} interrupted", file=sys.stderr)
    except BaseException as e:          # the script raised: keep the trace, report like Python
        text = _script_traceback(e)
        rec.write("error", text=text, type=type(e).__name__)
        if isinstance(e, KfdtraceError):
            # kfdtrace's own errors (a GPU fault, a wait that timed out, a failed ioctl) already
            # say what and where: one line, with the script's line; the traceback is in the trace
            print(f"kfdtrace record: {_script_location(e)}{type(e).__name__}: {e}", file=sys.stderr)
        else:                           # a bug in the script: its traceback, as Python prints it
            sys.stderr.write(text)
        status, code = "error", 1
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path
        sys.stdout.flush()
    summary = rec.finish(status, code)
    if not quiet:
        print(format_summary(summary), file=sys.stderr)
    return code, summary


def format_summary(s: dict) -> str:
    size = s["bytes"]
    human = f"{size / 2**20:.1f} MiB" if size >= 1 << 20 else f"{size / 1024:.1f} KiB"
    return (f"kfdtrace record: {s['records']} records, {s['submissions']} submissions, "
            f"{s['memwrite_bytes'] / 2**20:.1f} MiB captured memory ({s['memory_capture']}), "
            f"{human} in {s['seconds']:.2f} s -> {s['file']} ({s['status']})")


__all__ = ["run_script", "default_output", "format_summary"]
