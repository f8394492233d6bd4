"""A recording session: the trace header, the writer, the write tracker, and the end of it all.

    rec = Recorder("bug.trace", script="script.py").start()   # probes the backend for the header
    rec.install()                 # every port opened from now on is a RecordingPort
    ...                           # the workload
    rec.finish("finalized", 0)    # footer notes, index, trailer

The header is complete before the first record: `start()` opens its own, unwrapped port of the
chosen backend (so the workload's port, and an emulated GPU's log, see nothing of it), reads the
topology through it (raw sysfs files and parsed nodes) and asks KFD for its ioctl version with
GET_VERSION. Everything the recording port does goes through here: `write`/`write_data`/`blob`
(which never raise into the recorded program once the trace is broken or closed), `guard` and
`problem` (bookkeeping errors are reported once and recording goes on), and the WriteTracker
calls. The trace writer runs in background mode: blocks holding memory captures are compressed
and written by its thread, which the recording port wakes where the program hands the GPU work
or waits for it.
"""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import resource
import sys
import threading
import time
import traceback

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError, TraceError
from kfdtrace.trace import TraceWriter, finalize_on_exit


_getrusage, _SELF = resource.getrusage, resource.RUSAGE_SELF


def _minflt() -> int:
    return _getrusage(_SELF).ru_minflt


class _Writer(TraceWriter):
    """The trace writer, telling the recorder just before it closes (however that happens: the
    runner, SIGTERM, interpreter exit) so the footer gets the recorder's statistics."""

    recorder: "Recorder | None" = None

    def close(self, status: str = "finalized", exit_status: int | None = None) -> None:
        rec = self.recorder
        if rec is not None and not self.closed:
            self.recorder = None
            try:
                rec._before_close(status)
            except Exception as e:      # statistics must never stop the trace from closing
                print(f"kfdtrace record: warning: footer notes: {e}", file=sys.stderr)
        super().close(status, exit_status)


class _CapturingReader:
    """Reads sysfs through a port and keeps the raw bytes of every file it read."""

    def __init__(self, port):
        self.port, self.files = port, {}

    def read_file(self, path: str) -> bytes:
        data = self.port.read_file(path)
        self.files[path] = data
        return data

    def listdir(self, path: str) -> list[str]:
        return self.port.listdir(path)


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class Recorder:
    """One recording: path of the trace, what is recorded (script, arguments, backend) and how
    (codec, chunk size, flush interval, preferred memory-tracking method)."""

    def __init__(self, path, *, argv: list[str] | None = None, script: str | None = None,
                 script_args: list[str] | tuple = (), codec: str = "zlib", chunk_bytes: int = 1 << 20,
                 flush_interval: float | None = 0.5, memtrack: str | None = None):
        self.path = os.fspath(path)
        self.argv = list(argv) if argv is not None else list(sys.argv)
        self.script = os.path.abspath(script) if script else None
        self.script_args = list(script_args)
        self.codec, self.chunk_bytes, self.flush_interval = codec, chunk_bytes, flush_interval
        self.memtrack_prefer = memtrack
        self.writer: _Writer | None = None
        self.tracker = None
        self.memtrack_method = "none"
        self.header: dict = {}
        self.topology = None
        self.ports: list = []
        self.port_notes: list[dict] = []
        self.fault_gate = False
        self._flt = -1
        self.stats = {"submits": 0, "idle_doorbells": 0, "memwrite_bytes": 0, "captures": 0,
                      "collects_skipped": 0, "capture_s": 0.0, "capture_runs": 0, "capture_max_s": 0.0}
        self.problems: list[str] = []
        self._said: set[str] = set()
        self._lock = threading.Lock()
        self._t_start = None
        self._write = self._write_before_start
        self.status: str | None = None
        self.exit_status: int | None = None

    # -- start ------------------------------------------------------------------------------------
    def start(self, header_port=None, *, backend: str | None = None) -> "Recorder":
        """Probe the backend, write the header, start tracking. `header_port` is a port to read
        the topology and KFD version from (default: a fresh unwrapped port of `backend`, or of
        the default backend, which is closed again)."""
        from kfdtrace.record.memtrack import WriteTracker

        self._t_start = time.perf_counter()
        self.header = self._build_header(header_port, backend)
        self.tracker = WriteTracker(prefer=self.memtrack_prefer)
        self.memtrack_method = self.tracker.method
        self.fault_gate = self._test_fault_gate()
        self.header["memory_capture"] = self._capture_header()
        self.writer = _Writer(self.path, self.header, codec=self.codec, chunk_bytes=self.chunk_bytes,
                              flush_interval=self.flush_interval, strict=False, background=True,
                              on_error=self._write_failed)
        self.writer.recorder = self
        self._write = self.writer.write
        return self

    def _capture_header(self) -> dict:
        return {
            "method": self.memtrack_method,
            "probe": dict(self.tracker.stats.get("probe", {})),
            "fault_gate": self.fault_gate,
            "when": "before each doorbell, SET_EVENT and WAIT_EVENTS",
            "granularity": "pages (coalesced runs), split at allocation boundaries",
            "records": "one per allocation and capture, the bytes inline (no blob, no hash), at "
                       "most 16 MiB of data per record: memwrite for one run, memwrite_runs for several",
            "excluded": ["queue rings (the submit records hold their bytes)",
                         "queue read/write pointer slots", "the KFD event page",
                         "doorbell and MMIO pages"],
            "zero_pages_of_new_allocations": "not stored (a new allocation starts zero-filled)",
            "checksums": "crc32 after each successful CPU wait that followed GPU work, of the "
                         "CPU-mapped allocations (not rings, queue pointers, EOP/CWSR areas, event "
                         "page): whole at the first pass, then only the page runs that changed; the "
                         "expected contents of a page at a wait are its latest covering checksum",
        }

    def _build_header(self, port, backend) -> dict:
        from kfdtrace.port import emu_config_from_env, open_port, resolve_backend

        h: dict = {"argv": self.argv}
        if self.script:
            h["script"] = {"path": self.script, "sha256": _file_sha256(self.script),
                           "args": self.script_args}
        own = port is None
        try:
            if own:
                port = open_port(resolve_backend(backend), wrap=False)
        except KfdtraceError as e:
            h["backend"] = resolve_backend(backend)
            h["probe_error"] = str(e)
            return h
        try:
            h["backend"] = port.backend
            if port.backend == "emu":
                cfg = emu_config_from_env()
                for k in ("gpu", "gpus", "vram", "seed", "machine"):
                    v = getattr(port, k, None)
                    if k == "gpu":
                        fams = getattr(port, "families", None)
                        v = [f.name for f in fams] if fams else cfg.get("gpu")
                    if v is not None:
                        cfg[k] = v
                cfg["gpus"] = len(cfg["gpu"]) if isinstance(cfg.get("gpu"), list) else cfg.get("gpus")
                h["emu"] = cfg
            h["port"] = port.describe()
            self._probe(port, h)
        finally:
            if own:
                try:
                    port.shutdown()
                except Exception:
                    pass
        return h

    def _probe(self, port, h: dict) -> None:
        from kfdtrace.abi.families import get_family
        from kfdtrace.abi.topology import read_topology

        reader = _CapturingReader(port)
        try:
            topo = read_topology(reader=reader)
        except KfdtraceError as e:
            h["probe_error"] = f"topology: {e}"
            topo = None
        if topo is not None:
            self.topology = topo
            h["topology"] = dataclasses.asdict(topo)
            h["sysfs"] = reader.files
            gpus = []
            for node in topo.gpus:
                g = {"gpu_id": node.gpu_id, "node": node.index, "name": node.name}
                try:
                    fam = get_family(node.gfx_target_version)
                    g.update(gfx=fam.name, family=fam.arch)
                except KfdtraceError:
                    g.update(gfx=None, family=None)
                g.update({k: v for k, v in node.properties.items() if k not in g})
                gpus.append(g)
            h["gpus"] = gpus
        try:
            fd = port.open("/dev/kfd")
        except OSError as e:
            h["probe_error"] = f"open /dev/kfd: {e}"
            return
        try:
            buf = bytearray(abi.ioc_size(abi.AMDKFD_IOC_GET_VERSION))
            err = port.ioctl(fd, abi.AMDKFD_IOC_GET_VERSION, buf)
            if err:
                h["probe_error"] = f"GET_VERSION: errno {err}"
            else:
                v = abi.kfd_ioctl_get_version_args.from_buffer_copy(buf)
                h["kfd_version"] = {"major": v.major_version, "minor": v.minor_version}
        finally:
            port.close(fd)

    # -- the port hook ----------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap every port opened from now on (`kfdtrace.port.open_port`) with a RecordingPort."""
        from kfdtrace.port import set_port_wrapper

        set_port_wrapper(self.wrap, self)

    def uninstall(self) -> None:
        from kfdtrace.port import current_recorder, set_port_wrapper

        if current_recorder() is self:
            set_port_wrapper(None, None)

    def finalize_on_exit(self) -> None:
        """Finalize on SIGINT/SIGTERM, uncaught exceptions and interpreter exit (main thread)."""
        finalize_on_exit(self.writer)

    def wrap(self, port):
        from kfdtrace.record.port import RecordingPort

        if self.writer is None:
            self.start(header_port=port)
        return RecordingPort(port, self)

    def port_opened(self, port) -> None:
        with self._lock:
            self.ports.append(port)
            self.port_notes.append({"backend": port.backend, "describe": port.inner.describe()})
            if self.header.get("backend") not in (None, port.backend):
                self.problems.append(f"a {port.backend} port was recorded, but the header describes "
                                     f"the {self.header.get('backend')} backend")

    def port_closed(self, port) -> None:
        with self._lock:
            if port in self.ports:
                self.ports.remove(port)

    def families_by_gpu(self) -> dict:
        from kfdtrace.abi.families import get_family

        out = {}
        for node in (self.topology.gpus if self.topology else []):
            try:
                out[node.gpu_id] = get_family(node.gfx_target_version)
            except KfdtraceError:
                out[node.gpu_id] = None
        return out

    def render_minors(self) -> dict[int, int]:
        return {n.drm_render_minor: n.gpu_id for n in (self.topology.gpus if self.topology else [])}

    # -- writing ------------------------------------------------------------------------------------
    def now(self) -> int:
        return self.writer.now() if self.writer is not None else 0

    def write(self, kind: str, /, **fields) -> int:
        """Write a record; -1 when the trace is closed or broken (reported once, never raised:
        the recorded program goes on). Once started this is the writer's own `write` (its
        `on_error` reports), one call per record."""
        return self._write(kind, **fields)

    def write_data(self, kind: str, data, /, **fields) -> int:
        """`write` of a record whose `data` field is `data`, stored inline without a copy on
        this thread (`TraceWriter.write_data`: `data` must never change afterwards)."""
        if self.writer is None:
            self.start()
        return self.writer.write_data(kind, data, **fields)

    def _write_failed(self, e: TraceError) -> None:
        if not self.writer.closed:
            self._say("write", f"the trace cannot be written any more: {e}")

    def wake_writer(self) -> None:
        """Let the writer thread write what it was handed (`TraceWriter.wake`): called where the
        recorded thread synchronizes with the GPU, not on the submission path."""
        if self.writer is not None:
            self.writer.wake()

    def _write_before_start(self, kind: str, /, **fields) -> int:
        self.start()
        return self._write(kind, **fields)

    def blob(self, data):
        try:
            return self.writer.blob(data)
        except TraceError as e:
            if not self.writer.closed:
                self._say("write", f"the trace cannot be written any more: {e}")
            from kfdtrace.trace import BlobRef
            from kfdtrace.trace.format import blob_hash
            return BlobRef(blob_hash(data))

    def mark(self, label: str) -> None:
        """A user marker (`kfdtrace.mark`)."""
        self.write("marker", label=str(label))

    def _say(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            print(f"kfdtrace record: warning: {text}", file=sys.stderr)
        self.problems.append(text)
        del self.problems[:-64]

    def guard(self, fn, *args, **kw):
        """Run recorder bookkeeping; on a bug, report it (once per place) and let the recorded
        program go on. Returns fn's result, or None if it raised."""
        try:
            return fn(*args, **kw)
        except Exception as e:
            self.problem(getattr(fn, "__name__", "?"), e)
            return None

    def problem(self, where: str, e: Exception) -> None:
        """Report a recorder bug caught in `where` (once per place); the program goes on."""
        tb = traceback.extract_tb(e.__traceback__)[-1]
        self._say(where, f"recording problem in {where} ({os.path.basename(tb.filename)}:"
                         f"{tb.lineno}): {type(e).__name__}: {e}")

    # -- the write tracker (every call guarded: it never takes the program down) ----------------------
    def track(self, addr: int, size: int, kind: str = "anon") -> bool:
        if self.tracker is None or size <= 0:
            return False
        try:
            self.tracker.track(addr, size, kind=kind)
            return True
        except Exception as e:
            self._say("track", f"cannot track writes to {addr:#x}+{size:#x}: {e}")
            return False

    def untrack(self, addr: int, size: int) -> None:
        if self.tracker is not None and size > 0:
            self.guard(self.tracker.untrack, addr, size)

    def refresh(self, addr: int, size: int) -> None:
        if self.tracker is not None and size > 0:
            self.guard(self.tracker.refresh, addr, size)

    def collect(self, force: bool = False) -> list:
        """What the CPU wrote since the last collect (`WriteTracker.collect_runs`: one (runs,
        data) pair per written range). With uffd-wp, every first write to a
        protected page is a (minor) page fault the kernel resolves: when the process has taken
        no page fault since the last collect, nothing can have been written and the scan is
        skipped (`fault_gate`, self-tested at start; off whenever some range is compare- or
        soft-dirty-tracked, whose writes do not fault)."""
        t = self.tracker
        if t is None:
            return []
        if self.fault_gate:
            flt = _getrusage(_SELF).ru_minflt     # (inline: this runs before every submission)
            if flt == self._flt and not force and not t.slow:
                self.stats["collects_skipped"] += 1
                return []
            self._flt = flt
        return self.guard(t.collect_runs) or []

    def _test_fault_gate(self) -> bool:
        """Does a write to a freshly collected uffd-wp page show up as a minor fault here?"""
        import mmap as _mmap
        if self.tracker.method != "uffd-wp+pagemap-scan":
            return False
        m = _mmap.mmap(-1, _mmap.PAGESIZE)
        buf = (ctypes.c_char * _mmap.PAGESIZE).from_buffer(m)
        addr = ctypes.addressof(buf)
        try:
            self.tracker.track(addr, _mmap.PAGESIZE)
            self.tracker.collect()
            before = _minflt()
            buf[1] = b"x"
            ok = _minflt() > before and any(int(r[0, 0]) == addr for r, _ in self.tracker.collect_runs())
            self.tracker.untrack(addr, _mmap.PAGESIZE)
            return ok
        except Exception:
            return False
        finally:
            del buf
            m.close()

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def count_capture(self, seconds: float, nbytes: int, runs: int) -> None:
        s = self.stats
        s["captures"] += 1
        s["capture_s"] += seconds
        s["capture_max_s"] = max(s["capture_max_s"], seconds)
        s["memwrite_bytes"] += nbytes
        s["capture_runs"] += runs

    # -- the end --------------------------------------------------------------------------------------
    def _before_close(self, status: str) -> None:
        w = self.writer
        self.status = status
        stats = dict(self.stats)
        stats["capture_s"] = round(stats["capture_s"], 6)
        stats["capture_max_s"] = round(stats["capture_max_s"], 6)
        w.note("recorder", stats)
        if self.tracker is not None:
            ts = self.tracker.stats
            w.note("memory_capture", {"method": ts.get("method"), "collects": ts.get("collects"),
                                      "per_method": ts.get("per_method"),
                                      "fallback_count": ts.get("fallback_count"),
                                      "fallbacks": list(ts.get("fallbacks", []))[-16:],
                                      "dropped": ts.get("dropped")})
        w.note("ports", self.port_notes)
        if self.problems:
            w.note("problems", self.problems)

    def finish(self, status: str = "finalized", exit_status: int | None = None) -> dict:
        """Close the trace (footer, index, trailer) and the tracker; returns `summary()`."""
        self.uninstall()
        if self.writer is None:
            self.start()
        self.exit_status = exit_status
        self.writer.close(status, exit_status)
        if self.tracker is not None:
            self.tracker.close()
        return self.summary()

    def summary(self) -> dict:
        w = self.writer
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        return {"file": self.path, "records": len(w) if w else 0, "submissions": self.stats["submits"],
                "memwrite_bytes": self.stats["memwrite_bytes"], "bytes": size,
                "seconds": time.perf_counter() - self._t_start if self._t_start else 0.0,
                "status": w.status if w else None, "exit_status": self.exit_status,
                "memory_capture": self.memtrack_method}


__all__ = ["Recorder"]
