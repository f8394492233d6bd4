"""The KFD sysfs topology (/sys/devices/virtual/kfd/kfd/topology): parse a tree, write one.

Why both directions: the host path reads the real tree to learn gpu_ids, render minors and
families; the emulated GPU publishes its own tree in exactly the kernel's format so that the same
reader (and libhsakmt-style clients) cannot tell the difference. Reading goes through any object
with `read_file(path) -> bytes` and `listdir(path) -> list[str]` — a kfdtrace Port has exactly
these — so one parser serves the host's sysfs, the emulated port and in-memory trees.

Format facts come from the kernel (reference §2; K-TOPO kfd_topology.c `node_show`, `mem_show`,
`kfd_cache_show`, `iolink_show`, `sysprops_show`): every property file is `name value\\n` lines,
values printed with %u / %llu; a cache's `sibling_map` is a comma list of bits; `gpu_id` and
`generation_id` are a bare decimal; `name` is a bare string. Key order below is the kernel's
emission order (newest tree); older kernels lack some keys, so every key is optional here.
"""
from __future__ import annotations

import errno as _errno
import hashlib
import os
import posixpath
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kfdtrace.abi.families import Family, get_family
from kfdtrace.errors import TopologyError, UnknownFamilyError

DEFAULT_ROOT = "/sys/devices/virtual/kfd/kfd/topology"
PAGE_SIZE = 4096

# -- key order (kernel emission order) ---------------------------------------------------------------
SYSTEM_KEYS = ("platform_oem", "platform_id", "platform_rev")
NODE_KEYS = (
    "cpu_cores_count", "simd_count", "mem_banks_count", "caches_count", "io_links_count",
    "p2p_links_count", "cpu_core_id_base", "simd_id_base", "max_waves_per_simd", "lds_size_in_kb",
    "gds_size_in_kb", "num_gws", "wave_front_size", "array_count", "simd_arrays_per_engine",
    "cu_per_simd_array", "simd_per_cu", "max_slots_scratch_cu", "gfx_target_version", "vendor_id",
    "device_id", "location_id", "domain", "drm_render_minor", "hive_id", "num_sdma_engines",
    "num_sdma_xgmi_engines", "num_sdma_queues_per_engine", "num_cp_queues", "cwsr_size",
    "ctl_stack_size",
)
NODE_GPU_KEYS = (   # printed only for GPU nodes, after NODE_KEYS
    "max_engine_clk_fcompute", "local_mem_size", "fw_version", "capability", "capability2",
    "debug_prop", "sdma_fw_version", "unique_id", "num_xcc",
)
NODE_LAST_KEY = "max_engine_clk_ccompute"   # printed for every node, last
MEM_BANK_KEYS = ("heap_type", "size_in_bytes", "flags", "width", "mem_clk_max")
CACHE_KEYS = ("processor_id_low", "level", "size", "cache_line_size", "cache_lines_per_tag",
              "association", "latency", "type", "sibling_map")
IOLINK_KEYS = ("type", "version_major", "version_minor", "node_from", "node_to", "weight",
               "min_latency", "max_latency", "min_bandwidth", "max_bandwidth",
               "recommended_transfer_size", "recommended_sdma_engine_id_mask", "flags")

# -- enumerations (§2, K-SYSFS kfd_sysfs.h, kfd_crat.h) -----------------------------------------------
HEAP_SYSTEM, HEAP_FB_PUBLIC, HEAP_FB_PRIVATE, HEAP_GPU_GDS, HEAP_GPU_LDS, HEAP_GPU_SCRATCH = range(6)
MEM_FLAGS_HOT_PLUGGABLE, MEM_FLAGS_NON_VOLATILE = 1, 2
CACHE_TYPE_DATA, CACHE_TYPE_INSTRUCTION, CACHE_TYPE_CPU, CACHE_TYPE_HSACU = 1, 2, 4, 8
IOLINK_TYPE_HYPERTRANSPORT, IOLINK_TYPE_PCIEXPRESS, IOLINK_TYPE_QPI_1_1, IOLINK_TYPE_XGMI = 1, 2, 5, 11
IOLINK_FLAGS_ENABLED, IOLINK_FLAGS_NON_COHERENT = 0x1, 0x2
IOLINK_FLAGS_NO_ATOMICS_32_BIT, IOLINK_FLAGS_NO_ATOMICS_64_BIT, IOLINK_FLAGS_NO_PEER_TO_PEER_DMA = 0x4, 0x8, 0x10

CAP_HOT_PLUGGABLE = 0x1
CAP_ATS_PRESENT = 0x2
CAP_SHARED_WITH_GRAPHICS = 0x4
CAP_QUEUE_SIZE_POW2 = 0x8
CAP_QUEUE_SIZE_32BIT = 0x10
CAP_QUEUE_IDLE_EVENT = 0x20
CAP_VA_LIMIT = 0x40
CAP_WATCH_POINTS_SUPPORTED = 0x80
CAP_WATCH_POINTS_TOTALBITS_MASK, CAP_WATCH_POINTS_TOTALBITS_SHIFT = 0xF00, 8
CAP_DOORBELL_TYPE_MASK, CAP_DOORBELL_TYPE_SHIFT = 0x3000, 12
CAP_DOORBELL_TYPE_PRE_1_0, CAP_DOORBELL_TYPE_1_0, CAP_DOORBELL_TYPE_2_0 = 0, 1, 2
CAP_AQL_QUEUE_DOUBLE_MAP = 0x4000
CAP_TRAP_DEBUG_SUPPORT = 0x8000
CAP_TRAP_DEBUG_WAVE_LAUNCH_TRAP_OVERRIDE_SUPPORTED = 0x10000
CAP_TRAP_DEBUG_WAVE_LAUNCH_MODE_SUPPORTED = 0x20000
CAP_TRAP_DEBUG_PRECISE_MEMORY_OPERATIONS_SUPPORTED = 0x40000
CAP_MEM_EDCSUPPORTED = 0x100000
CAP_RASEVENTNOTIFY = 0x200000
CAP_ASIC_REVISION_MASK, CAP_ASIC_REVISION_SHIFT = 0x03C00000, 22
CAP_SRAM_EDCSUPPORTED = 0x04000000
CAP_SVMAPI_SUPPORTED = 0x08000000
CAP_FLAGS_COHERENTHOSTACCESS = 0x10000000
CAP_TRAP_DEBUG_FIRMWARE_SUPPORTED = 0x20000000
CAP_TRAP_DEBUG_PRECISE_ALU_OPERATIONS_SUPPORTED = 0x40000000
CAP_PER_QUEUE_RESET_SUPPORTED = 0x80000000
CAP2_PER_SDMA_QUEUE_RESET_SUPPORTED = 0x1
DBG_WATCH_ADDR_MASK_LO_BIT_MASK = 0xF
DBG_WATCH_ADDR_MASK_HI_BIT_MASK, DBG_WATCH_ADDR_MASK_HI_BIT_SHIFT = 0x3F0, 4
DBG_DISPATCH_INFO_ALWAYS_VALID = 0x400
DBG_WATCHPOINTS_EXCLUSIVE = 0x800

#: kfd_crat.c: GPU processor ids start at 0x8000_1000 and advance by each GPU's total CU count.
KFD_GPU_PROCESSOR_ID_BASE = 0x80001000
VENDOR_AMD = 0x1002
DEFAULT_CPU_MHZ = 3000
_U64 = (1 << 64) - 1


# -- readers ---------------------------------------------------------------------------------------
class FileReader(Protocol):
    def read_file(self, path: str) -> bytes: ...
    def listdir(self, path: str) -> list[str]: ...


class LocalReader:
    """The local filesystem (the default reader)."""

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)


class DictReader:
    """An in-memory tree: {relative posix path: bytes, or None for a directory} under `root`.
    `topology_files()` produces such a dict, so an emulated port can serve sysfs without a disk."""

    def __init__(self, files: dict[str, bytes | None], root: str = DEFAULT_ROOT):
        self.root = root.rstrip("/") or "/"
        self.files = {p.strip("/"): v for p, v in files.items()}
        self._dirs: dict[str, set[str]] = {"": set()}
        for p, v in self.files.items():
            parts = p.split("/")
            for i in range(len(parts)):
                parent, child = "/".join(parts[:i]), parts[i]
                self._dirs.setdefault(parent, set()).add(child)
                if i < len(parts) - 1 or v is None:
                    self._dirs.setdefault("/".join(parts[: i + 1]), set())

    def _rel(self, path: str) -> str:
        path = posixpath.normpath(path)
        if path == self.root:
            return ""
        prefix = self.root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise FileNotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT), path)
        return path[len(prefix):]

    def read_file(self, path: str) -> bytes:
        rel = self._rel(path)
        if rel in self._dirs:
            raise IsADirectoryError(_errno.EISDIR, os.strerror(_errno.EISDIR), path)
        data = self.files.get(rel)
        if data is None:
            raise FileNotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT), path)
        return data

    def listdir(self, path: str) -> list[str]:
        rel = self._rel(path)
        if rel not in self._dirs:
            if rel in self.files:
                raise NotADirectoryError(_errno.ENOTDIR, os.strerror(_errno.ENOTDIR), path)
            raise FileNotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT), path)
        return sorted(self._dirs[rel])


# -- model -----------------------------------------------------------------------------------------
def _prop(key: str, default: int = 0):
    return property(lambda self: self.properties.get(key, default),
                    doc=f"properties[{key!r}] ({default} when the kernel does not publish it)")


@dataclass
class Node:
    """One topology node. `properties` keeps the file's key order; mem_banks / caches / io_links /
    p2p_links are dicts of their `properties` files (a cache's `sibling_map` is a tuple of bits)."""
    index: int
    gpu_id: int = 0
    name: str = ""
    properties: dict[str, int] = field(default_factory=dict)
    mem_banks: list[dict] = field(default_factory=list)
    caches: list[dict] = field(default_factory=list)
    io_links: list[dict] = field(default_factory=list)
    p2p_links: list[dict] = field(default_factory=list)
    accessible: bool = True   # False when the device cgroup denied reading it (EPERM)

    cpu_cores_count = _prop("cpu_cores_count")
    simd_count = _prop("simd_count")
    simd_per_cu = _prop("simd_per_cu")
    simd_id_base = _prop("simd_id_base")
    array_count = _prop("array_count")
    simd_arrays_per_engine = _prop("simd_arrays_per_engine")
    cu_per_simd_array = _prop("cu_per_simd_array")
    max_waves_per_simd = _prop("max_waves_per_simd")
    wave_front_size = _prop("wave_front_size")
    lds_size_in_kb = _prop("lds_size_in_kb")
    gfx_target_version = _prop("gfx_target_version")
    vendor_id = _prop("vendor_id")
    device_id = _prop("device_id")
    location_id = _prop("location_id")
    domain = _prop("domain")
    drm_render_minor = _prop("drm_render_minor")
    hive_id = _prop("hive_id")
    num_sdma_engines = _prop("num_sdma_engines")
    num_sdma_xgmi_engines = _prop("num_sdma_xgmi_engines")
    num_sdma_queues_per_engine = _prop("num_sdma_queues_per_engine")
    num_cp_queues = _prop("num_cp_queues")
    cwsr_size = _prop("cwsr_size")
    ctl_stack_size = _prop("ctl_stack_size")
    max_engine_clk_fcompute = _prop("max_engine_clk_fcompute")
    max_engine_clk_ccompute = _prop("max_engine_clk_ccompute")
    fw_version = _prop("fw_version")
    sdma_fw_version = _prop("sdma_fw_version")
    capability = _prop("capability")
    capability2 = _prop("capability2")
    debug_prop = _prop("debug_prop")
    unique_id = _prop("unique_id")
    num_xcc = _prop("num_xcc", 1)

    @property
    def is_gpu(self) -> bool:
        """The libhsakmt discriminator: GPU nodes have SIMDs (APU nodes have both)."""
        return self.simd_count > 0

    @property
    def is_cpu(self) -> bool:
        return self.cpu_cores_count > 0

    @property
    def family(self) -> Family:
        if not self.is_gpu:
            raise UnknownFamilyError(f"topology node {self.index} is a CPU node (simd_count 0), not a GPU")
        return get_family(self.gfx_target_version)

    @property
    def cu_count(self) -> int:
        return self.simd_count // self.simd_per_cu if self.simd_per_cu else 0

    @property
    def vram_size(self) -> int:
        """Bytes of device-local memory: the FB_PUBLIC + FB_PRIVATE banks."""
        return sum(b.get("size_in_bytes", 0) for b in self.mem_banks
                   if b.get("heap_type") in (HEAP_FB_PUBLIC, HEAP_FB_PRIVATE))

    @property
    def doorbell_type(self) -> int:
        return (self.capability & CAP_DOORBELL_TYPE_MASK) >> CAP_DOORBELL_TYPE_SHIFT

    @property
    def pci_bus_id(self) -> str:
        """"DDDD:BB:DD.F" from domain and location_id (bus << 8 | device << 3 | function)."""
        loc = self.location_id
        return f"{self.domain:04x}:{loc >> 8 & 0xFF:02x}:{loc >> 3 & 0x1F:02x}.{loc & 7:x}"

    @property
    def render_node(self) -> str:
        return f"/dev/dri/renderD{self.drm_render_minor}"

    def get(self, key: str, default: int | None = None) -> int | None:
        return self.properties.get(key, default)

    def sync_counts(self) -> None:
        """Make *_count properties agree with the lists (only keys already present are touched)."""
        for key, items in (("mem_banks_count", self.mem_banks), ("caches_count", self.caches),
                           ("io_links_count", self.io_links), ("p2p_links_count", self.p2p_links)):
            if key in self.properties:
                self.properties[key] = len(items)


@dataclass
class Topology:
    generation_id: int = 1
    system_properties: dict[str, int] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)

    @property
    def gpus(self) -> list[Node]:
        return [n for n in self.nodes if n.is_gpu]

    @property
    def cpu_nodes(self) -> list[Node]:
        return [n for n in self.nodes if not n.is_gpu]

    @property
    def gpu_ids(self) -> list[int]:
        return [n.gpu_id for n in self.gpus]

    def gpu(self, gpu_id: int) -> Node:
        for n in self.nodes:
            if n.is_gpu and n.gpu_id == gpu_id:
                return n
        raise TopologyError(f"no GPU node with gpu_id {gpu_id}; gpu_ids: {self.gpu_ids or 'none'}")

    def node(self, index: int) -> Node:
        for n in self.nodes:
            if n.index == index:
                return n
        raise TopologyError(f"no topology node {index}; nodes: {[n.index for n in self.nodes]}")


# -- parsing ---------------------------------------------------------------------------------------
_NAME_RE = re.compile(r"[A-Za-z0-9_]+\Z")
_UINT_RE = re.compile(r"[0-9]+\Z")
_BITS_RE = re.compile(r"[0-9]+(,[0-9]+)*\Z")


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TopologyError(f"{path}:{line}: non-ASCII byte {data[e.start]:#04x}") from None


def _uint(text: str, path: str, line: int, what: str) -> int:
    if not _UINT_RE.match(text) or int(text) > _U64:
        raise TopologyError(f"{path}:{line}: {what} {text!r} is not an unsigned 64-bit decimal")
    return int(text)


def parse_properties(data: bytes, path: str = "<properties>") -> dict[str, int | tuple[int, ...]]:
    """Parse a `name value` properties file, keeping its key order. A `sibling_map` line becomes a
    tuple of ints. Unknown keys are kept; blank lines are skipped; anything else malformed raises
    TopologyError naming the file and line."""
    out: dict[str, int | tuple[int, ...]] = {}
    for lineno, raw in enumerate(_decode(data, path).split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        key = parts[0]
        if not _NAME_RE.match(key):
            raise TopologyError(f"{path}:{lineno}: malformed property name {key!r}")
        if key in out:
            raise TopologyError(f"{path}:{lineno}: property {key!r} appears twice")
        if key == "sibling_map":
            if len(parts) > 2 or (len(parts) == 2 and not _BITS_RE.match(parts[1])):
                raise TopologyError(f"{path}:{lineno}: malformed sibling_map {line[len(key):].strip()!r}")
            out[key] = tuple(int(b) for b in parts[1].split(",")) if len(parts) == 2 else ()
            continue
        if len(parts) != 2:
            raise TopologyError(f"{path}:{lineno}: expected 'name value', got {line!r}")
        out[key] = _uint(parts[1], path, lineno, f"value of {key!r}")
    return out


def _read(reader: FileReader, path: str) -> bytes | None:
    """A file's bytes, or None if it does not exist. Other OS errors become TopologyError."""
    try:
        return reader.read_file(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise
    except OSError as e:
        raise TopologyError(f"{path}: cannot read: {e.strerror or e}") from None


def _entries(reader: FileReader, path: str) -> list[tuple[int, str]]:
    """Numeric subdirectory names of `path`, sorted numerically; [] if the directory is absent."""
    try:
        names = reader.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise TopologyError(f"{path}: cannot list: {e.strerror or e}") from None
    return sorted((int(n), n) for n in names if n.isdigit())


def _single_uint(reader: FileReader, path: str, default: int) -> int:
    data = _read(reader, path)
    if data is None:
        return default
    text = _decode(data, path).strip()
    return _uint(text, path, 1, "value")


def _sub_items(reader: FileReader, node_dir: str, kind: str) -> list[dict]:
    base = posixpath.join(node_dir, kind)
    items = []
    for _, name in _entries(reader, base):
        path = posixpath.join(base, name, "properties")
        data = _read(reader, path)
        items.append(parse_properties(data, path) if data is not None else {})
    return items


def _read_node(reader: FileReader, nodes_dir: str, index: int, dirname: str) -> Node:
    d = posixpath.join(nodes_dir, dirname)
    try:
        gpu_id = _single_uint(reader, posixpath.join(d, "gpu_id"), 0)
        name_data = _read(reader, posixpath.join(d, "name"))
        props_path = posixpath.join(d, "properties")
        props_data = _read(reader, props_path)
    except PermissionError:
        # The device cgroup hides this GPU from us (the kernel returns -EPERM); libhsakmt skips it.
        return Node(index=index, accessible=False)
    name = _decode(name_data, posixpath.join(d, "name")).rstrip("\n") if name_data is not None else ""
    props = parse_properties(props_data, props_path) if props_data is not None else {}
    for k, v in props.items():
        if isinstance(v, tuple):
            raise TopologyError(f"{props_path}: node property {k!r} must be a number")
    try:
        return Node(index=index, gpu_id=gpu_id, name=name, properties=props,  # type: ignore[arg-type]
                    mem_banks=_sub_items(reader, d, "mem_banks"), caches=_sub_items(reader, d, "caches"),
                    io_links=_sub_items(reader, d, "io_links"), p2p_links=_sub_items(reader, d, "p2p_links"))
    except PermissionError as e:
        raise TopologyError(f"{e.filename or d}: permission denied") from None


def read_topology(root: str | os.PathLike = DEFAULT_ROOT, reader: FileReader | None = None, *,
                  retries: int = 3) -> Topology:
    """Parse the tree at `root` through `reader` (default: the local filesystem). Like libhsakmt,
    read generation_id before and after and retry if the kernel rebuilt the tree meanwhile."""
    reader = reader or LocalReader()
    root = os.fspath(root)
    try:
        return _read_tree(reader, root, retries)
    except PermissionError as e:
        raise TopologyError(f"{e.filename or root}: permission denied") from None


def _read_tree(reader: FileReader, root: str, retries: int) -> Topology:
    for _ in range(max(1, retries)):
        try:
            reader.listdir(root)
        except FileNotFoundError:
            raise TopologyError(f"{root}: no KFD topology here (is the amdgpu driver loaded?)") from None
        except OSError as e:
            raise TopologyError(f"{root}: cannot list: {e.strerror or e}") from None
        gen = _single_uint(reader, posixpath.join(root, "generation_id"), 0)
        sp_path = posixpath.join(root, "system_properties")
        sp_data = _read(reader, sp_path)
        sysprops = parse_properties(sp_data, sp_path) if sp_data is not None else {}
        nodes_dir = posixpath.join(root, "nodes")
        nodes = [_read_node(reader, nodes_dir, i, name) for i, name in _entries(reader, nodes_dir)]
        if _single_uint(reader, posixpath.join(root, "generation_id"), 0) == gen:
            return Topology(generation_id=gen, system_properties=sysprops, nodes=nodes)  # type: ignore[arg-type]
    raise TopologyError(f"{root}: generation_id kept changing while reading ({retries} attempts)")


# -- writing ---------------------------------------------------------------------------------------
def format_properties(props: dict, where: str = "properties") -> bytes:
    """Render a properties dict in the kernel's format, in the dict's order."""
    out = []
    for k, v in props.items():
        if not isinstance(k, str) or not _NAME_RE.match(k):
            raise TopologyError(f"{where}: bad property name {k!r}")
        if k == "sibling_map":
            # kfd_cache_show prints "sibling_map " then "%d," per bit and turns the last char into
            # "\n" — so an empty map comes out as "sibling_map\n".
            bits = tuple(v)
            if any(not isinstance(b, int) or b < 0 for b in bits):
                raise TopologyError(f"{where}: sibling_map must hold non-negative ints")
            out.append("sibling_map " + ",".join(map(str, bits)) + "\n" if bits else "sibling_map\n")
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U64:
            raise TopologyError(f"{where}: {k} = {v!r} is not an unsigned 64-bit integer")
        out.append(f"{k} {v}\n")
    return "".join(out).encode("ascii")


def topology_files(topo: Topology) -> dict[str, bytes | None]:
    """The tree as {relative path: file bytes, or None for a directory}, in creation order."""
    files: dict[str, bytes | None] = {
        "generation_id": f"{topo.generation_id}\n".encode(),
        "system_properties": format_properties(topo.system_properties, "system_properties"),
        "nodes": None,
    }
    seen: set[int] = set()
    for node in topo.nodes:
        if node.index in seen or node.index < 0:
            raise TopologyError(f"node index {node.index} is negative or used twice")
        seen.add(node.index)
        d = f"nodes/{node.index}"
        files[d] = None
        files[f"{d}/gpu_id"] = f"{node.gpu_id}\n".encode()
        files[f"{d}/name"] = f"{node.name}\n".encode("ascii")
        files[f"{d}/properties"] = format_properties(node.properties, f"{d}/properties")
        for kind, items in (("mem_banks", node.mem_banks), ("caches", node.caches),
                            ("io_links", node.io_links), ("p2p_links", node.p2p_links)):
            files[f"{d}/{kind}"] = None
            for i, item in enumerate(items):
                files[f"{d}/{kind}/{i}"] = None
                files[f"{d}/{kind}/{i}/properties"] = format_properties(item, f"{d}/{kind}/{i}/properties")
        files[f"{d}/perf"] = None
    return files


def write_topology(topo: Topology, root: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write `topo` under `root` in the kernel's format. An existing tree there is an error unless
    `overwrite`, which removes only generation_id, system_properties and nodes/ first."""
    root = os.fspath(root)
    files = topology_files(topo)
    present = [n for n in ("generation_id", "system_properties", "nodes") if os.path.lexists(os.path.join(root, n))]
    if present:
        if not overwrite:
            raise TopologyError(f"{root}: already holds a topology ({', '.join(present)}); pass overwrite=True")
        for n in present:
            p = os.path.join(root, n)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    os.makedirs(root, exist_ok=True)
    for rel, data in files.items():
        path = os.path.join(root, *rel.split("/"))
        if data is None:
            os.makedirs(path, exist_ok=True)
        else:
            with open(path, "wb") as f:
                f.write(data)


# -- the kernel's derived values -------------------------------------------------------------------
_CRC16_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xA001 if _c & 1 else _c >> 1
    _CRC16_TABLE.append(_c)


def crc16(data: bytes, crc: int = 0) -> int:
    """Linux lib/crc16.c: CRC-16 with polynomial x^16+x^15+x^2+1 (0x8005), LSB first (reflected
    0xA001), caller-supplied initial value; no final xor (CRC-16/ARC when crc=0)."""
    for b in data:
        crc = (crc >> 8) ^ _CRC16_TABLE[(crc ^ b) & 0xFF]
    return crc


def generate_gpu_id(*, location_id: int, device_id: int, local_mem_size: int, domain: int = 0,
                    subsystem_vendor: int = VENDOR_AMD, subsystem_device: int = 0, xcc_mask: int = 1,
                    existing: Iterable[int] = (), method: str = "crc16") -> int:
    """The kernel's gpu_id (kfd_topology.c kfd_generate_gpu_id; K-TOPO, woct0rdho/linux-amdgpu-driver
    bee6fb31 and torvalds/linux): eight u32 words — devfn, subsystem_vendor | subsystem_device << 16,
    PCI domain, PCI device id, bus number, local memory size low / high, (first XCC) | (XCC count << 16)
    — hashed with crc16(0, ...) over their 32 little-endian bytes and cut to 16 bits
    (KFD_GPU_ID_HASH_WIDTH). Zero becomes 1, and an id already in `existing` is bumped by one (mod
    2^16) until unique. method="hash32" gives the older kernels' fold instead: the XOR of
    hash_32(word, 16) = (word * 0x61C88647 mod 2^32) >> 16 over the same words, without the fix-ups.
    location_id is pci_dev_id (bus << 8 | devfn), as published in the topology."""
    if xcc_mask <= 0:
        raise TopologyError(f"xcc_mask {xcc_mask:#x} must have at least one XCC bit set")
    first_xcc = (xcc_mask & -xcc_mask).bit_length() - 1
    words = [location_id & 0xFF, (subsystem_vendor | subsystem_device << 16) & 0xFFFFFFFF,
             domain & 0xFFFFFFFF, device_id & 0xFFFFFFFF, location_id >> 8 & 0xFF,
             local_mem_size & 0xFFFFFFFF, local_mem_size >> 32 & 0xFFFFFFFF,
             (first_xcc | bin(xcc_mask).count("1") << 16) & 0xFFFFFFFF]
    if method == "hash32":
        h = 0
        for w in words:
            h ^= ((w * 0x61C88647) & 0xFFFFFFFF) >> 16
        return h
    if method != "crc16":
        raise TopologyError(f"unknown gpu_id method {method!r} (crc16 or hash32)")
    gpu_id = crc16(b"".join(w.to_bytes(4, "little") for w in words)) & 0xFFFF
    taken = set(existing)
    while True:
        if gpu_id == 0:
            gpu_id = 1
        if gpu_id not in taken:
            return gpu_id
        gpu_id = (gpu_id + 1) & 0xFFFF


def ctx_save_restore_sizes(props: dict[str, int]) -> dict[str, int]:
    """kfd_queue.c kfd_queue_ctx_save_restore_size for a GPU node's properties: the CWSR area and
    control-stack sizes CREATE_QUEUE must match, plus the debugger and EOP buffer sizes
    (4 KiB pages)."""
    gfxv = props.get("gfx_target_version", 0)
    if gfxv < 80001:
        return {"cwsr_size": 0, "ctl_stack_size": 0, "debug_memory_size": 0, "eop_buffer_size": 0}
    num_xcc = props.get("num_xcc", 1) or 1
    cu_num = props["simd_count"] // props["simd_per_cu"] // num_xcc
    arrays = props.get("array_count", 0) // num_xcc
    if gfxv < 100100:
        wave_num = min(cu_num * 40, arrays // max(1, props.get("simd_arrays_per_engine", 1)) * 512)
    else:
        wave_num = cu_num * 32
    vgpr = (0x80000 if gfxv in (90402, 90010, 90008, 90500)
            else 0x60000 if gfxv in (110000, 110001, 120000, 120001) else 0x40000)
    lds = props.get("lds_size_in_kb", 64) << 10 if gfxv == 90500 else 0x10000
    per_cu = vgpr + 0x4000 + lds + 0x1000          # VGPR + SGPR + LDS + HWREG per CU
    align = lambda x, a=PAGE_SIZE: -(-x // a) * a  # noqa: E731
    wg_data_size = align(cu_num * per_cu)
    ctl = align(40 + wave_num * (12 if gfxv >= 100100 else 8) + 8)
    if gfxv // 10000 == 10:
        ctl = min(ctl, 0x7000)   # "HW design limits control stack size to 0x7000"
    return {"cwsr_size": align(ctl + wg_data_size), "ctl_stack_size": ctl,
            "debug_memory_size": align(wave_num * 32, 64),
            "eop_buffer_size": 0x8000 if gfxv == 80002 else 4096}


def gpu_capability(family: Family | str | int, *, asic_revision: int = 0, sriov: bool = False) -> int:
    """The `capability` word kfd_topology_add_device / kfd_topology_set_capabilities publish for a
    SOC15 GPU with 4 watch points, 64-bit doorbells, firmware new enough for the debugger, SVM and
    (on RAS-capable Instinct parts) ECC enabled."""
    fam = get_family(family)
    gc = fam.gc_version
    cap = CAP_WATCH_POINTS_SUPPORTED | (2 << CAP_WATCH_POINTS_TOTALBITS_SHIFT)   # log2(4 watch points)
    cap |= CAP_DOORBELL_TYPE_2_0 << CAP_DOORBELL_TYPE_SHIFT
    cap |= (CAP_TRAP_DEBUG_SUPPORT | CAP_TRAP_DEBUG_WAVE_LAUNCH_TRAP_OVERRIDE_SUPPORTED
            | CAP_TRAP_DEBUG_WAVE_LAUNCH_MODE_SUPPORTED)
    if gc < (10, 0, 0):
        if gc >= (9, 4, 2):
            cap |= CAP_TRAP_DEBUG_PRECISE_MEMORY_OPERATIONS_SUPPORTED
        if not sriov:
            cap |= CAP_PER_QUEUE_RESET_SUPPORTED
    elif gc >= (12, 0, 0):
        cap |= CAP_TRAP_DEBUG_PRECISE_ALU_OPERATIONS_SUPPORTED
    fw_min = {(9, 0, 1): 459 + 32768, (9, 4, 0): 459, (9, 4, 1): 60, (9, 4, 2): 51}.get(gc)
    if gc[:2] == (10, 3) and gc[2] in (0, 1, 2, 4, 5):
        fw_min = 89
    if fw_min is None or fam.mec_fw_version >= fw_min:
        cap |= CAP_TRAP_DEBUG_FIRMWARE_SUPPORTED
    cap |= (asic_revision << CAP_ASIC_REVISION_SHIFT) & CAP_ASIC_REVISION_MASK
    if fam.ras:
        cap |= CAP_SRAM_EDCSUPPORTED | CAP_MEM_EDCSUPPORTED | (CAP_RASEVENTNOTIFY if gc != (9, 0, 1) else 0)
    return cap | CAP_SVMAPI_SUPPORTED


def gpu_debug_prop(family: Family | str | int) -> int:
    """`debug_prop` per kfd_topology_set_capabilities: watch-address mask bits and whether the
    dispatch info in trap temporaries is always valid (not on GC 9.4.2; GFX11 assumes MES fw >= 70)."""
    gc = get_family(family).gc_version
    prop = 0 if gc == (9, 4, 2) else DBG_DISPATCH_INFO_ALWAYS_VALID
    if gc < (10, 0, 0):
        lo, hi = (7, 30) if gc in ((9, 4, 3), (9, 4, 4)) else (6, 29)
    else:
        lo, hi = 7, 29
    return prop | lo | hi << DBG_WATCH_ADDR_MASK_HI_BIT_SHIFT


# -- builders --------------------------------------------------------------------------------------
def _cu_bitmaps(fam: Family, cus: int, num_xcc: int) -> list[list[int]]:
    """Active-CU bitmap per XCC per shader array; harvested CUs are spread so the first arrays keep
    one more (MI300X: 38 CUs over 4 arrays of 10 → 10,10,9,9 — which gives its 626 caches)."""
    arrays = fam.array_count // fam.num_xcc
    per_xcc = cus // num_xcc
    base, extra = divmod(per_xcc, arrays)
    return [[(1 << (base + (a < extra))) - 1 for a in range(arrays)] for _ in range(num_xcc)]


def make_gpu_caches(family: Family | str | int, simd_id_base: int = KFD_GPU_PROCESSOR_ID_BASE, *,
                    cus: int | None = None, num_xcc: int | None = None) -> list[dict]:
    """The cache entries kfd_fill_cache_non_crat_info builds: each level-1 cache once per group of
    CUs sharing it (per shader array, skipping groups with no active CU), each L2/L3 once per GPU,
    with processor_id_low and sibling_map computed as fill_in_l1_pcache / fill_in_l2_l3_pcache do."""
    fam = get_family(family)
    num_xcc = num_xcc or fam.num_xcc
    bitmaps = _cu_bitmaps(fam, cus if cus is not None else fam.cu_count, num_xcc)
    max_cu = fam.cu_per_simd_array
    caches = []

    def entry(pid: int, spec, sibling: list[int]) -> dict:
        size, level, line, ctype, _ = spec
        bits = tuple((m >> (8 * byte + bit)) & 1 for m in sibling for byte in range(4) for bit in range(8))
        return {"processor_id_low": pid, "level": level, "size": size, "cache_line_size": line,
                "cache_lines_per_tag": 0, "association": 0, "latency": 0, "type": ctype, "sibling_map": bits}

    for spec in fam.caches:
        shared = spec[4] or max_cu
        smask = (1 << shared) - 1
        pid = simd_id_base
        if spec[1] == 1:
            for xcc in bitmaps:
                for bm in xcc:
                    for k in range(0, max_cu, shared):
                        block = (bm >> k) & smask
                        if block:
                            first = (block & -block).bit_length()
                            caches.append(entry(pid + first - 1, spec, [block >> (first - 1)]))
                        pid += min(shared, max_cu - k)
        else:
            flat = [bm & smask for xcc in bitmaps for bm in xcc]
            first_mask = next((m for m in flat if m), 0)
            if first_mask:
                first = (first_mask & -first_mask).bit_length()
                # the kernel stores the first mask (shifted), then each array's mask one slot late
                caches.append(entry(pid + first - 1, spec, [first_mask >> (first - 1)] + flat[:-1]))
    return caches


def _iolink(type_: int, node_from: int, node_to: int, *, weight: int, min_bw: int, max_bw: int,
            sdma_mask: int, flags: int) -> dict:
    return {"type": type_, "version_major": 0, "version_minor": 0, "node_from": node_from,
            "node_to": node_to, "weight": weight, "min_latency": 0, "max_latency": 0,
            "min_bandwidth": min_bw, "max_bandwidth": max_bw, "recommended_transfer_size": 0,
            "recommended_sdma_engine_id_mask": sdma_mask, "flags": flags}


#: kfd_crat.h KFD_CRAT_XGMI_WEIGHT; PCIe links get the NUMA distance between the nodes (20 remote).
XGMI_WEIGHT, PCIE_WEIGHT = 15, 20
#: amdgpu_amdkfd_get_pcie_bandwidth_mbytes(is_min=True): Gen1 x1 = 2500 Mb/s / 8.
PCIE_MIN_BANDWIDTH = 312


def make_cpu_node(index: int = 0, cpu_cores: int = 16, mem_size: int = 64 << 30, *,
                  cpu_core_id_base: int = 0, max_engine_clk_ccompute: int = DEFAULT_CPU_MHZ,
                  mem_width: int = 64, mem_clk_max: int = 3200, name: str = "") -> Node:
    """A CPU NUMA node as the kernel's virtual CRAT makes it: no caches (the kernel does not list CPU
    caches), one SYSTEM memory bank, io_links added by make_topology / link_cpu_gpu."""
    props = {k: 0 for k in NODE_KEYS}
    props.update(cpu_cores_count=cpu_cores, mem_banks_count=1, cpu_core_id_base=cpu_core_id_base)
    props[NODE_LAST_KEY] = max_engine_clk_ccompute
    bank = {"heap_type": HEAP_SYSTEM, "size_in_bytes": mem_size, "flags": 0, "width": mem_width,
            "mem_clk_max": mem_clk_max}
    return Node(index=index, gpu_id=0, name=name, properties=props, mem_banks=[bank])


def _stable_u64(*parts: object) -> int:
    """A deterministic nonzero 64-bit id (unique_id / hive_id stand-ins) from the given parts."""
    h = int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")
    return h or 1


def make_gpu_node(index: int, family: Family | str | int, *, gpu_id: int | None = None,
                  drm_render_minor: int | None = None, vram_size: int | None = None,
                  visible_vram: int | None = None, location_id: int | None = None, domain: int = 0,
                  unique_id: int | None = None, hive_id: int = 0, io_link_to: int = 0,
                  simd_id_base: int = KFD_GPU_PROCESSOR_ID_BASE, asic_revision: int = 0,
                  max_engine_clk_ccompute: int = DEFAULT_CPU_MHZ, existing_gpu_ids: Iterable[int] = ()) -> Node:
    """A GPU node with the family's defaults, in the kernel's key order: capability with doorbell
    type 2 etc., debug_prop, CWSR sizes, an FB_PUBLIC bank (plus FB_PRIVATE when only
    `visible_vram` bytes are CPU-visible), the kernel's cache list and a PCIe io_link to CPU node
    `io_link_to`. Defaults: render minor 127 + index, PCI bus index + 2, gpu_id from the kernel's
    hash of those (bumped past `existing_gpu_ids`)."""
    fam = get_family(family)
    vram = fam.vram_size if vram_size is None else vram_size
    loc = ((index + 2) & 0xFF) << 8 if location_id is None else location_id
    if gpu_id is None:
        gpu_id = generate_gpu_id(location_id=loc, device_id=fam.device_id, local_mem_size=vram,
                                 domain=domain, xcc_mask=(1 << fam.num_xcc) - 1, existing=existing_gpu_ids)
    props: dict[str, int] = {
        "cpu_cores_count": 0, "simd_count": fam.simd_count, "mem_banks_count": 0, "caches_count": 0,
        "io_links_count": 0, "p2p_links_count": 0, "cpu_core_id_base": 0, "simd_id_base": simd_id_base,
        "max_waves_per_simd": fam.max_waves_per_simd, "lds_size_in_kb": fam.lds_size_in_kb,
        "gds_size_in_kb": 0, "num_gws": fam.num_gws, "wave_front_size": fam.wave_size,
        "array_count": fam.array_count, "simd_arrays_per_engine": fam.simd_arrays_per_engine,
        "cu_per_simd_array": fam.cu_per_simd_array, "simd_per_cu": fam.simd_per_cu,
        "max_slots_scratch_cu": fam.max_slots_scratch_cu, "gfx_target_version": fam.gfx_target_version,
        "vendor_id": VENDOR_AMD, "device_id": fam.device_id, "location_id": loc, "domain": domain,
        "drm_render_minor": 127 + index if drm_render_minor is None else drm_render_minor,
        "hive_id": hive_id, "num_sdma_engines": fam.num_sdma_engines,
        "num_sdma_xgmi_engines": fam.num_sdma_xgmi_engines,
        "num_sdma_queues_per_engine": fam.num_sdma_queues_per_engine, "num_cp_queues": fam.num_cp_queues,
        "cwsr_size": 0, "ctl_stack_size": 0,
        "max_engine_clk_fcompute": fam.max_engine_clk_fcompute, "local_mem_size": 0,
        "fw_version": fam.mec_fw_version, "capability": gpu_capability(fam, asic_revision=asic_revision),
        "capability2": 0, "debug_prop": gpu_debug_prop(fam), "sdma_fw_version": fam.sdma_fw_version,
        "unique_id": _stable_u64("unique_id", fam.device_id, domain, loc) if unique_id is None else unique_id,
        "num_xcc": fam.num_xcc, NODE_LAST_KEY: max_engine_clk_ccompute,
    }
    sizes = ctx_save_restore_sizes(props)
    props["cwsr_size"], props["ctl_stack_size"] = sizes["cwsr_size"], sizes["ctl_stack_size"]
    public = vram if visible_vram is None else min(visible_vram, vram)
    banks = [{"heap_type": HEAP_FB_PUBLIC, "size_in_bytes": public, "flags": 0, "width": fam.mem_width,
              "mem_clk_max": fam.mem_clk_max}]
    if vram > public:
        banks.append(dict(banks[0], heap_type=HEAP_FB_PRIVATE, size_in_bytes=vram - public))
    link = _iolink(IOLINK_TYPE_PCIEXPRESS, index, io_link_to, weight=PCIE_WEIGHT, min_bw=PCIE_MIN_BANDWIDTH,
                   max_bw=fam.pcie_bandwidth_mbs, sdma_mask=(1 << fam.num_sdma_engines) - 1,
                   flags=IOLINK_FLAGS_ENABLED)
    node = Node(index=index, gpu_id=gpu_id, name=fam.asic_name, properties=props, mem_banks=banks,
                caches=make_gpu_caches(fam, simd_id_base), io_links=[link])
    node.sync_counts()
    return node


def link_cpu_gpu(cpu: Node, gpu: Node) -> None:
    """Add the CPU→GPU half of a PCIe link (the kernel adds it to the CPU node when it parses the
    GPU's CRAT): non-coherent from the CPU's side."""
    fam = gpu.family
    cpu.io_links.append(_iolink(IOLINK_TYPE_PCIEXPRESS, cpu.index, gpu.index, weight=PCIE_WEIGHT,
                                min_bw=PCIE_MIN_BANDWIDTH, max_bw=fam.pcie_bandwidth_mbs,
                                sdma_mask=(1 << fam.num_sdma_engines) - 1,
                                flags=IOLINK_FLAGS_ENABLED | IOLINK_FLAGS_NON_COHERENT))
    cpu.sync_counts()


def link_xgmi(a: Node, b: Node, *, bandwidth_mbs: int = 64000) -> None:
    """Add XGMI io_links a→b and b→a (weight 15; recommended SDMA engines = the XGMI ones)."""
    for src, dst in ((a, b), (b, a)):
        fam = src.family
        mask = ((1 << fam.num_sdma_xgmi_engines) - 1) << fam.num_sdma_engines \
            if fam.num_sdma_xgmi_engines else (1 << fam.num_sdma_engines) - 1
        src.io_links.append(_iolink(IOLINK_TYPE_XGMI, src.index, dst.index, weight=XGMI_WEIGHT,
                                    min_bw=bandwidth_mbs, max_bw=bandwidth_mbs, sdma_mask=mask,
                                    flags=IOLINK_FLAGS_ENABLED))
        src.sync_counts()


def make_topology(gpus: Sequence[Family | str | int], *, cpu_cores: int = 16, mem_size: int = 64 << 30,
                  xgmi_hive: bool = False, generation_id: int = 1, seed: object = 0) -> Topology:
    """A whole system: CPU node 0, then one node per GPU (render minors 128.., PCI buses 3..,
    processor ids advancing by each GPU's CU count, unique gpu_ids), PCIe links both ways, and
    with `xgmi_hive` a full XGMI mesh and a shared hive_id. Deterministic for a given `seed`."""
    cpu = make_cpu_node(0, cpu_cores, mem_size)
    topo = Topology(generation_id=generation_id, nodes=[cpu], system_properties={
        "platform_oem": int.from_bytes(b"KFDTRACE", "little"),
        "platform_id": int.from_bytes(b"KFDEMU", "little"), "platform_rev": 1})
    hive = _stable_u64("hive", seed, tuple(get_family(g).name for g in gpus)) if xgmi_hive and len(gpus) > 1 else 0
    pid = KFD_GPU_PROCESSOR_ID_BASE
    for i, g in enumerate(gpus, 1):
        fam = get_family(g)
        node = make_gpu_node(i, fam, hive_id=hive, simd_id_base=pid, existing_gpu_ids=topo.gpu_ids,
                             unique_id=_stable_u64("unique_id", seed, i, fam.name))
        pid += fam.array_count * fam.cu_per_simd_array
        link_cpu_gpu(cpu, node)
        topo.nodes.append(node)
    if hive:
        gpu_nodes = topo.gpus
        for i, a in enumerate(gpu_nodes):
            for b in gpu_nodes[i + 1:]:
                link_xgmi(a, b)
        for n in gpu_nodes:   # kernel order: the CPU link first, then peers by node index
            n.io_links[1:] = sorted(n.io_links[1:], key=lambda link: link["node_to"])
    return topo
