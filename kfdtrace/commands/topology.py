"""`kfdtrace topology`: the GPUs a backend sees, read from its KFD sysfs topology."""
from __future__ import annotations

import json

from kfdtrace.abi.topology import read_topology
from kfdtrace.commands._backend import add_backend_options
from kfdtrace.errors import UnknownFamilyError
from kfdtrace.port import open_port


def add_parser(sub) -> None:
    p = sub.add_parser("topology", help="print the GPUs a backend sees",
                       description="Print the KFD topology (CPU and GPU nodes) a backend exposes.")
    add_backend_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _family(node) -> str:
    try:
        return node.family.name
    except UnknownFamilyError:
        return f"unknown (gfx_target_version {node.gfx_target_version})"


def run(args) -> int:
    port = open_port(args.backend, gpu=args.gpu, gpus=args.gpus, wrap=False)
    try:
        topo = read_topology(reader=port)
        gpus = [{
            "node": n.index, "gpu_id": n.gpu_id, "family": _family(n), "name": n.name,
            "gfx_target_version": n.gfx_target_version, "simd_count": n.simd_count,
            "wave_front_size": n.wave_front_size, "vram_bytes": n.vram_size,
            "num_sdma_engines": n.num_sdma_engines, "drm_render_minor": n.drm_render_minor,
        } for n in topo.gpus]
        if args.json:
            print(json.dumps({"backend": port.backend, "describe": port.describe(),
                              "nodes": len(topo.nodes), "gpus": gpus}, indent=2))
            return 0
        print(f"backend: {port.describe()}")
        print(f"{len(topo.nodes)} nodes, {len(gpus)} GPU(s)")
        for g in gpus:
            print(f"  node {g['node']}: {g['family']:<8} gpu_id {g['gpu_id']:#06x}  "
                  f"{g['simd_count']} SIMDs, wave{g['wave_front_size']}, "
                  f"{g['vram_bytes'] / 2**30:.1f} GiB VRAM, {g['num_sdma_engines']} SDMA engines, "
                  f"/dev/dri/renderD{g['drm_render_minor']}")
        return 0
    finally:
        port.shutdown()
