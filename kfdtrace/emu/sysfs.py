"""The emulated machine's KFD sysfs tree.

The tree is rendered with the project's topology writer and served read-only through the port's
`read_file`/`listdir` under both paths the kernel publishes it at, so
the parser the host path uses (`kfdtrace.abi.topology.read_topology(reader=port)`) reads it
exactly as it reads a real /sys.

gpu_ids are the kernel's 16-bit hash of each GPU's PCI location, device id and memory size
(`generate_gpu_id`); the `machine` number moves the GPUs to other PCI buses, so "another machine"
gets other gpu_ids, as a replay on real hardware would.
"""
from __future__ import annotations

import errno
import os
import posixpath

from kfdtrace.abi import topology as topo_mod
from kfdtrace.abi.families import Family

ROOTS = ("/sys/devices/virtual/kfd/kfd/topology", "/sys/class/kfd/kfd/topology")
FIRST_RENDER_MINOR = 128


def gpu_location(index: int, machine: int) -> int:
    """PCI location_id (bus << 8 | device << 3 | function) of GPU `index` on machine `machine`:
    bus 3 + index on machine 0, 32 buses further per machine number."""
    return ((3 + index + 0x20 * machine) & 0xFF) << 8


def build_topology(families: list[Family], vram: int, machine: int = 0) -> topo_mod.Topology:
    """CPU node 0 plus one GPU node per family (render minors 128.., PCIe links both ways)."""
    cpu = topo_mod.make_cpu_node(0)
    topo = topo_mod.Topology(generation_id=1, nodes=[cpu], system_properties={
        "platform_oem": int.from_bytes(b"KFDTRACE", "little"),
        "platform_id": int.from_bytes(b"KFDEMU", "little"), "platform_rev": 1 + machine})
    pid = topo_mod.KFD_GPU_PROCESSOR_ID_BASE
    for i, fam in enumerate(families):
        node = topo_mod.make_gpu_node(
            i + 1, fam, drm_render_minor=FIRST_RENDER_MINOR + i, vram_size=vram,
            location_id=gpu_location(i, machine), simd_id_base=pid,
            existing_gpu_ids=topo.gpu_ids)
        pid += fam.array_count * fam.cu_per_simd_array
        topo_mod.link_cpu_gpu(cpu, node)
        topo.nodes.append(node)
    return topo


class Sysfs:
    """A topology tree, rendered by the topology writer (`topology_files`, byte for byte what
    `write_topology` puts on disk) and served from memory under the kernel's sysfs paths.
    Serving from memory matters: a two-MI300X tree is ~1300 files (626 caches per GPU), which
    take ~1 s to create on disk here and ~50 ms to render. `export()` writes it out."""

    def __init__(self, topo: topo_mod.Topology):
        self.topology = topo
        self._reader = topo_mod.DictReader(topo_mod.topology_files(topo), ROOTS[0])

    def _canonical(self, path: str) -> str | None:
        """The path under ROOTS[0], or None for a directory above the tree (/sys/class/kfd …)."""
        p = posixpath.normpath(path)
        for root in ROOTS:
            if p == root or p.startswith(root + "/"):
                return ROOTS[0] + p[len(root):]
        if any(root.startswith(p + "/") for root in ROOTS):
            return None
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    def read_file(self, path: str) -> bytes:
        c = self._canonical(path)
        if c is None:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        try:
            return self._reader.read_file(c)
        except OSError as e:
            raise type(e)(e.errno, e.strerror, path) from None

    def listdir(self, path: str) -> list[str]:
        c = self._canonical(path)
        if c is None:
            p = posixpath.normpath(path)
            return sorted({r[len(p) + 1:].split("/")[0] for r in ROOTS if r.startswith(p + "/")})
        try:
            return self._reader.listdir(c)
        except OSError as e:
            raise type(e)(e.errno, e.strerror, path) from None

    def export(self, directory: str) -> None:
        """Write the tree under `directory` with the topology writer (e.g. for other tools)."""
        topo_mod.write_topology(self.topology, directory)

    def close(self) -> None:
        self._reader = None


__all__ = ["Sysfs", "build_topology", "gpu_location", "ROOTS", "FIRST_RENDER_MINOR"]
