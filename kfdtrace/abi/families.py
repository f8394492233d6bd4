"""GPU family registry: one row per ISA (gfx name) with the facts every layer keys on.

Why one table: the decoder, the packet builders, the code-object loader and the emulated GPU all
need to answer "what does this GPU do differently?" (wave size, SDMA packet generation, ACQUIRE_MEM
length, where COMPUTE_PGM_RSRC3 lives, what the kernel descriptor's rsrc3 bits mean) and "what does
its KFD topology node look like?". Both come from here, so a new family is one new row.

Sources (see /work/shared/reference/amd-kfd.md §0 for the ids):
  * gfx_target_version per GC IP: K-DEV kfd_device.c `kgd2kfd_probe` (§7.1).
  * ELF EF_AMDGPU_MACH: LLVM-ELF (§6).
  * SDMA IP and queues per engine: K-DEV `kfd_device_info_set_sdma_info` (§7.1/§7.2); SDMA 6.x/7.x
    reserve 2 queues per engine for the kernel, and KFD publishes `queues - reserved` (kfd_topology.c).
  * Packet/register differences: §3.3, §3.4, §4.3, §7.3.
  * Kernel-descriptor rsrc3 bit fields: LLVM AMDHSAKernelDescriptor.h (COMPUTE_PGM_RSRC3_GFX90A /
    _GFX10_GFX11 / _GFX11 / _GFX12_PLUS enums): INST_PREF_SIZE and TRAP_ON_START/END exist only on
    GFX11 (bits 4..11 are reserved on GFX10), IMAGE_OP on GFX11+.
  * GPU cache tables: K-TOPO kfd_crat.c (vega10/vega20/aldebaran/sienna_cichlid/navy_flounder/
    dimgrey_cavefish/beige_goby tables; GC 9.4.3+, GFX11 and GFX12 from IP discovery).
  * Topology defaults (CU layout, clocks, VRAM, firmware versions, PCI device ids): product data of
    the named card (PCI ids from libdrm amdgpu.ids), cross-checked where possible against real
    topology dumps (TG-MOCK's gfx1100 node, MI300X `caches_count 626`, an R9700 node's
    `cwsr_size 30699520` / `ctl_stack_size 28672`). They make the emulated GPU look like that card;
    nothing in the ABI depends on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kfdtrace.errors import UnknownFamilyError

GiB = 1 << 30
MiB = 1 << 20

# -- per-generation packet facts (§3.3, §3.4, §4.3, §7.3) ------------------------------------------

#: RELEASE_MEM dw1 cache-action bits (name, bit). GFX9: EOP TC/TCL1 action bits (soc15d.h).
RELEASE_MEM_CACHE_BITS_GFX9: tuple[tuple[str, int], ...] = (
    ("TCL1_VOL_ACTION_ENA", 12), ("TC_VOL_ACTION_ENA", 13), ("TC_WB_ACTION_ENA", 15),
    ("TCL1_ACTION_ENA", 16), ("TC_ACTION_ENA", 17), ("TC_NC_ACTION_ENA", 19),
    ("TC_WC_ACTION_ENA", 20), ("TC_MD_ACTION_ENA", 21),
)
#: GFX10/11/12.0: the GCR field of RELEASE_MEM dw1 (nvd.h). GL2_RANGE is 2 bits (17:18), GCR_SEQ
#: 2 bits (22:23); the bit given is the field's low bit.
RELEASE_MEM_CACHE_BITS_GFX10: tuple[tuple[str, int], ...] = (
    ("GLM_WB", 12), ("GLM_INV", 13), ("GLV_INV", 14), ("GL1_INV", 15), ("GL2_US", 16),
    ("GL2_RANGE", 17), ("GL2_DISCARD", 19), ("GL2_INV", 20), ("GL2_WB", 21), ("GCR_SEQ", 22),
)

#: Kernel-descriptor compute_pgm_rsrc3 fields (name, lo, hi) — same bits as COMPUTE_PGM_RSRC3.
KD_RSRC3_NONE: tuple[tuple[str, int, int], ...] = ()          # gfx900/906/908: reserved
KD_RSRC3_GFX90A = (("ACCUM_OFFSET", 0, 5), ("TG_SPLIT", 16, 16))
KD_RSRC3_GFX10 = (("SHARED_VGPR_COUNT", 0, 3),)
KD_RSRC3_GFX11 = (("SHARED_VGPR_COUNT", 0, 3), ("INST_PREF_SIZE", 4, 9), ("TRAP_ON_START", 10, 10),
                  ("TRAP_ON_END", 11, 11), ("IMAGE_OP", 31, 31))
KD_RSRC3_GFX12 = (("INST_PREF_SIZE", 4, 11), ("GLG_EN", 13, 13), ("IMAGE_OP", 31, 31))

# -- GPU cache descriptions (kfd_crat.c kfd_gpu_cache_info) -----------------------------------------
# (size KiB, level, cache_line_size, HSA cache type, num_cu_shared); num_cu_shared 0 = "one per shader
# array" (the kernel's max_cu_per_sh). HSA type: DATA 1 | INSTRUCTION 2 | HSACU 8 (§2).
_D, _I = 1 | 8, 2 | 8
CacheSpec = tuple[int, int, int, int, int]
_VEGA10: tuple[CacheSpec, ...] = ((16, 1, 64, _D, 1), (32, 1, 64, _I, 3), (16, 1, 64, _D, 3),
                                  (4096, 2, 64, _D, 16))
_VEGA20: tuple[CacheSpec, ...] = ((16, 1, 64, _D, 1), (32, 1, 64, _I, 3), (16, 1, 64, _D, 3),
                                  (8192, 2, 64, _D, 16))
_ALDEBARAN: tuple[CacheSpec, ...] = ((16, 1, 64, _D, 1), (32, 1, 64, _I, 2), (16, 1, 64, _D, 2),
                                     (8192, 2, 128, _D, 14))


def _navi2x(gl1_shared: int, l2: int, l3: int) -> tuple[CacheSpec, ...]:
    return ((16, 1, 128, _D, 1), (32, 1, 64, _I, 2), (16, 1, 64, _D, 2),
            (128, 1, 128, _D, gl1_shared), (l2, 2, 128, _D, gl1_shared), (l3, 3, 64, _D, gl1_shared))


def _from_ip_discovery(tcp: int, sqc_i: int, sqc_d: int, gl1: int, l2: int, l3: int) -> tuple[CacheSpec, ...]:
    """GC 9.4.3+/GFX11/GFX12: the kernel builds the table from IP-discovery gc_info
    (kfd_fill_gpu_cache_info_from_gfx_config[_v2]): TCP per CU, SQC per 2 CUs, GL1 per shader
    array, one L2 and (if the part has one) one MALL/Infinity-Cache L3 entry. L3 line size is 0 there."""
    specs = [(tcp, 1, 128, _D, 1), (sqc_i, 1, 64, _I, 2), (sqc_d, 1, 64, _D, 2)]
    if gl1:
        specs.append((gl1, 1, 128, _D, 0))
    specs.append((l2, 2, 128, _D, 0))
    if l3:
        specs.append((l3, 3, 0, _D, 0))
    return tuple(specs)


@dataclass(frozen=True)
class Family:
    """One GPU ISA. ABI facts first, then the defaults the emulated GPU's topology node uses."""
    name: str                 # "gfx942"
    arch: str                 # "CDNA3"
    product: str              # codename / product text
    gc_ip: str                # "9.4.3"
    gfx_target_version: int   # 90402 (decimal major*10000 + minor*100 + stepping)
    mach: int                 # ELF EF_AMDGPU_MACH
    wave_size: int            # native/topology wave size: 64 GFX9/CDNA, 32 RDNA
    gfx_major: int            # 9, 10, 11, 12
    sdma_ip: str              # "4.4.2"
    sdma_gen: int             # SDMA packet-format generation: 4 (GFX9), 5 (GFX10), 6 (GFX11 and GFX12)
    acquire_mem_dwords: int   # 7 on GFX9, 8 on GFX10+
    pgm_rsrc3_reg: int        # absolute dword address of COMPUTE_PGM_RSRC3
    copy_linear_count_bits: int
    const_fill_count_bits: int
    sdma_fence_mtype: bool    # FENCE has MTYPE/cache bits (v5+)
    sdma_has_gcr: bool        # GCR_REQ (op 17) exists (v5+)
    release_mem_cache_bits: tuple[tuple[str, int], ...]
    kd_rsrc3_fields: tuple[tuple[str, int, int], ...]
    doorbell_size: int        # bytes; 8 on SOC15+
    # -- topology defaults (what the kernel would publish for the named card) --
    num_sdma_engines: int
    num_sdma_xgmi_engines: int
    num_sdma_queues_per_engine: int   # as published: hardware queues minus kernel-reserved ones
    num_cp_queues: int
    simd_count: int
    simd_per_cu: int
    cu_per_simd_array: int    # max CUs per shader array (incl. harvested ones)
    array_count: int          # shader arrays, all XCCs (the sysfs value: per-XCC count × num_xcc)
    simd_arrays_per_engine: int
    max_waves_per_simd: int
    lds_size_in_kb: int
    num_xcc: int
    device_id: int            # PCI device id of the named card
    asic_name: str            # topology `name` (lower-cased amdgpu asic name)
    vram_size: int            # bytes
    max_engine_clk_fcompute: int  # MHz
    mec_fw_version: int
    sdma_fw_version: int
    hsakmt_version: int | None = None  # libhsakmt GFX_VERSION_* (0xMMmmss), where it has one
    max_slots_scratch_cu: int = 32
    num_gws: int = 64
    ras: bool = False         # RAS/ECC (Instinct): SRAM/MEM EDC + RAS event capability bits
    apu: bool = False
    pcie_bandwidth_mbs: int = 32000   # io_link max_bandwidth to the CPU (MB/s, kernel's units)
    mem_width: int = 256      # memory bus width (mem_banks `width`)
    mem_clk_max: int = 1000   # MHz (mem_banks `mem_clk_max`)
    caches: tuple[CacheSpec, ...] = field(default=(), repr=False)

    # -- derived ------------------------------------------------------------------------------
    @property
    def isa_name(self) -> str:
        return self.name

    @property
    def supports_wave32(self) -> bool:
        """GFX10+ run wave32 natively (CS_W32_EN / ENABLE_WAVEFRONT_SIZE32); GFX9 is wave64 only."""
        return self.gfx_major >= 10

    @property
    def cu_count(self) -> int:
        """Active compute units (all XCCs)."""
        return self.simd_count // self.simd_per_cu

    @property
    def gc_version(self) -> tuple[int, int, int]:
        return _version_tuple(self.gc_ip)

    @property
    def sdma_version(self) -> tuple[int, int, int]:
        return _version_tuple(self.sdma_ip)

    @property
    def doorbell_process_slice(self) -> int:
        """Bytes of doorbell space per process: roundup(doorbell_size * 1024 queues, 4 KiB) (§1.6)."""
        return -(-self.doorbell_size * 1024 // 4096) * 4096

    @property
    def needs_pci_atomics(self) -> bool:
        """Whether KFD requires PCIe atomics (waived by new-enough MEC firmware; K-DEV, §7.2)."""
        if self.gfx_major < 10:
            return False
        threshold = {10: 92, 11: 509, 12: 2090}[self.gfx_major]
        return self.mec_fw_version < threshold

    def decode_rsrc3(self, value: int) -> dict[str, int]:
        """Split a kernel descriptor's compute_pgm_rsrc3 into this family's named fields."""
        return {name: (value >> lo) & ((1 << (hi - lo + 1)) - 1) for name, lo, hi in self.kd_rsrc3_fields}

    def encode_rsrc3(self, **fields: int) -> int:
        """The inverse of decode_rsrc3; unknown field names or oversized values raise UnknownFamilyError."""
        layout = {name: (lo, hi) for name, lo, hi in self.kd_rsrc3_fields}
        value = 0
        for name, v in fields.items():
            if name not in layout:
                raise UnknownFamilyError(f"{self.name} has no compute_pgm_rsrc3 field {name!r}; "
                                         f"fields: {', '.join(layout) or '(none)'}")
            lo, hi = layout[name]
            if not 0 <= v < (1 << (hi - lo + 1)):
                raise UnknownFamilyError(f"{self.name} compute_pgm_rsrc3.{name}={v} does not fit bits {hi}:{lo}")
            value |= v << lo
        return value


def _version_tuple(text: str) -> tuple[int, int, int]:
    a, b, c = (int(x) for x in text.split("."))
    return a, b, c


def _family(name: str, arch: str, product: str, gc_ip: str, gtv: int, mach: int, sdma_ip: str, *,
            arrays_per_xcc: int, sh_per_se: int, cu_per_array: int, cus: int, num_xcc: int = 1,
            waves: int, lds: int = 64, sdma: tuple[int, int], cp_queues: int, **kw) -> Family:
    """Fill in the per-generation facts from gfx major / SDMA generation (§7.3)."""
    major = gtv // 10000
    sdma_gen = 4 if major == 9 else 5 if major == 10 else 6
    simd_per_cu = 4 if major == 9 else 2
    qpe = 2 if sdma_ip.startswith(("4.0.", "4.1.")) else 6 if sdma_gen >= 6 else 8
    if major == 9:
        rsrc3 = KD_RSRC3_GFX90A if gtv >= 90010 else KD_RSRC3_NONE
    else:
        rsrc3 = {10: KD_RSRC3_GFX10, 11: KD_RSRC3_GFX11, 12: KD_RSRC3_GFX12}[major]
    return Family(
        name=name, arch=arch, product=product, gc_ip=gc_ip, gfx_target_version=gtv, mach=mach,
        wave_size=64 if major == 9 else 32, gfx_major=major, sdma_ip=sdma_ip, sdma_gen=sdma_gen,
        acquire_mem_dwords=7 if major == 9 else 8,
        pgm_rsrc3_reg=0x2E2D if major == 9 else 0x2E28,
        copy_linear_count_bits=30 if sdma_gen >= 6 else 22,
        const_fill_count_bits=30 if sdma_gen >= 6 else 22,
        sdma_fence_mtype=sdma_gen >= 5, sdma_has_gcr=sdma_gen >= 5,
        release_mem_cache_bits=RELEASE_MEM_CACHE_BITS_GFX9 if major == 9 else RELEASE_MEM_CACHE_BITS_GFX10,
        kd_rsrc3_fields=rsrc3, doorbell_size=8,
        num_sdma_engines=sdma[0], num_sdma_xgmi_engines=sdma[1], num_sdma_queues_per_engine=qpe,
        num_cp_queues=cp_queues, simd_count=cus * simd_per_cu, simd_per_cu=simd_per_cu,
        cu_per_simd_array=cu_per_array, array_count=arrays_per_xcc * num_xcc,
        simd_arrays_per_engine=sh_per_se, max_waves_per_simd=waves, lds_size_in_kb=lds,
        num_xcc=num_xcc, **kw)


_ROWS: tuple[Family, ...] = (
    # ---- GFX9 / CDNA (SDMA v4 packets, wave64, ACQUIRE_MEM 7 dw, RSRC3 at 0x2E2D) ----
    _family("gfx900", "GCN5", "Vega10 (Radeon Instinct MI25, Vega 56/64)", "9.0.1", 90000, 0x2C, "4.0.0",
            arrays_per_xcc=4, sh_per_se=1, cu_per_array=16, cus=64, waves=10, sdma=(2, 0), cp_queues=24,
            device_id=0x6860, asic_name="vega10", vram_size=16 * GiB, max_engine_clk_fcompute=1500,
            mec_fw_version=459 + 32768, sdma_fw_version=444, hsakmt_version=0x090000,
            pcie_bandwidth_mbs=16000, mem_width=2048, mem_clk_max=945, caches=_VEGA10),
    _family("gfx906", "GCN5.1", "Vega20 (Instinct MI50/MI60, Radeon VII)", "9.4.0", 90006, 0x2F, "4.2.0",
            arrays_per_xcc=4, sh_per_se=1, cu_per_array=16, cus=60, waves=10, sdma=(2, 0), cp_queues=24,
            device_id=0x66A1, asic_name="vega20", vram_size=16 * GiB, max_engine_clk_fcompute=1725,
            mec_fw_version=469, sdma_fw_version=145, hsakmt_version=0x090006, ras=True,
            mem_width=4096, mem_clk_max=1000, caches=_VEGA20),
    _family("gfx908", "CDNA1", "Arcturus (Instinct MI100)", "9.4.1", 90008, 0x30, "4.2.2",
            arrays_per_xcc=8, sh_per_se=1, cu_per_array=16, cus=120, waves=10, sdma=(2, 6), cp_queues=24,
            device_id=0x738C, asic_name="arcturus", vram_size=32 * GiB, max_engine_clk_fcompute=1502,
            mec_fw_version=70, sdma_fw_version=18, hsakmt_version=0x090008, ras=True,
            mem_width=4096, mem_clk_max=1200, caches=_VEGA20),
    _family("gfx90a", "CDNA2", "Aldebaran (Instinct MI210/MI250/MI250X; one GCD)", "9.4.2", 90010, 0x3F, "4.4.0",
            arrays_per_xcc=8, sh_per_se=1, cu_per_array=16, cus=110, waves=8, sdma=(2, 3), cp_queues=24,
            device_id=0x740C, asic_name="aldebaran", vram_size=64 * GiB, max_engine_clk_fcompute=1700,
            mec_fw_version=88, sdma_fw_version=9, hsakmt_version=0x09000A, ras=True,
            mem_width=4096, mem_clk_max=1600, caches=_ALDEBARAN),
    _family("gfx942", "CDNA3", "Aqua Vanjaram (Instinct MI300A/MI300X/MI325X)", "9.4.3", 90402, 0x4C, "4.4.2",
            arrays_per_xcc=4, sh_per_se=1, cu_per_array=10, cus=304, num_xcc=8, waves=8, sdma=(2, 14),
            cp_queues=24, device_id=0x74A1, asic_name="ip discovery", vram_size=192 * GiB,
            max_engine_clk_fcompute=2100, mec_fw_version=177, sdma_fw_version=19, hsakmt_version=0x090400,
            ras=True, pcie_bandwidth_mbs=64000, mem_width=8192, mem_clk_max=1300,
            caches=_from_ip_discovery(32, 64, 16, 0, 4096, 256 * 1024)),
    _family("gfx950", "CDNA4", "Instinct MI350X/MI355X", "9.5.0", 90500, 0x4F, "4.4.5",
            arrays_per_xcc=4, sh_per_se=1, cu_per_array=8, cus=256, num_xcc=8, waves=8, lds=160,
            sdma=(2, 14), cp_queues=24, device_id=0x75A0, asic_name="ip discovery", vram_size=288 * GiB,
            max_engine_clk_fcompute=2200, mec_fw_version=75, sdma_fw_version=20, ras=True,
            pcie_bandwidth_mbs=64000, mem_width=8192, mem_clk_max=2000,
            caches=_from_ip_discovery(32, 64, 16, 0, 4096, 256 * 1024)),
    # ---- GFX10.3 / RDNA2 (SDMA v5 packets) ----
    _family("gfx1030", "RDNA2", "Navi21 Sienna Cichlid (RX 6800/6900, W6800)", "10.3.0", 100300, 0x36, "5.2.0",
            arrays_per_xcc=8, sh_per_se=2, cu_per_array=10, cus=80, waves=16, sdma=(4, 0), cp_queues=24,
            device_id=0x73BF, asic_name="sienna_cichlid", vram_size=16 * GiB, max_engine_clk_fcompute=2250,
            mec_fw_version=118, sdma_fw_version=80, hsakmt_version=0x0A0300,
            mem_width=256, mem_clk_max=1000, caches=_navi2x(10, 4096, 128 * 1024)),
    _family("gfx1031", "RDNA2", "Navi22 Navy Flounder (RX 6700 XT)", "10.3.2", 100301, 0x37, "5.2.2",
            arrays_per_xcc=4, sh_per_se=2, cu_per_array=10, cus=40, waves=16, sdma=(2, 0), cp_queues=24,
            device_id=0x73DF, asic_name="navy_flounder", vram_size=12 * GiB, max_engine_clk_fcompute=2581,
            mec_fw_version=118, sdma_fw_version=80, hsakmt_version=0x0A0301,
            mem_width=192, mem_clk_max=1000, caches=_navi2x(10, 3072, 96 * 1024)),
    _family("gfx1032", "RDNA2", "Navi23 Dimgrey Cavefish (RX 6600 XT)", "10.3.4", 100302, 0x38, "5.2.4",
            arrays_per_xcc=4, sh_per_se=2, cu_per_array=8, cus=32, waves=16, sdma=(2, 0), cp_queues=24,
            device_id=0x73FF, asic_name="dimgrey_cavefish", vram_size=8 * GiB, max_engine_clk_fcompute=2589,
            mec_fw_version=118, sdma_fw_version=80, hsakmt_version=0x0A0302, pcie_bandwidth_mbs=16000,
            mem_width=128, mem_clk_max=1000, caches=_navi2x(8, 2048, 32 * 1024)),
    _family("gfx1034", "RDNA2", "Navi24 Beige Goby (RX 6500 XT)", "10.3.5", 100304, 0x3E, "5.2.5",
            arrays_per_xcc=2, sh_per_se=2, cu_per_array=8, cus=16, waves=16, sdma=(1, 0), cp_queues=24,
            device_id=0x743F, asic_name="beige_goby", vram_size=4 * GiB, max_engine_clk_fcompute=2815,
            mec_fw_version=118, sdma_fw_version=80, hsakmt_version=0x0A0304, pcie_bandwidth_mbs=8000,
            mem_width=64, mem_clk_max=1125, caches=_navi2x(8, 1024, 16 * 1024)),
    # ---- GFX11 / RDNA3, RDNA3.5 (SDMA v6 packets) ----
    _family("gfx1100", "RDNA3", "Navi31 Plum Bonito (RX 7900, W7900)", "11.0.0", 110000, 0x41, "6.0.0",
            arrays_per_xcc=12, sh_per_se=2, cu_per_array=8, cus=96, waves=16, sdma=(2, 0), cp_queues=8,
            device_id=0x744C, asic_name="ip discovery", vram_size=24 * GiB, max_engine_clk_fcompute=2482,
            mec_fw_version=2140, sdma_fw_version=20, hsakmt_version=0x0B0000,
            mem_width=384, mem_clk_max=1250, caches=_from_ip_discovery(32, 32, 16, 256, 6144, 96 * 1024)),
    _family("gfx1101", "RDNA3", "Navi32 Wheat Nas (RX 7800/7700)", "11.0.3", 110001, 0x46, "6.0.3",
            arrays_per_xcc=6, sh_per_se=2, cu_per_array=10, cus=60, waves=16, sdma=(2, 0), cp_queues=8,
            device_id=0x747E, asic_name="ip discovery", vram_size=16 * GiB, max_engine_clk_fcompute=2430,
            mec_fw_version=2140, sdma_fw_version=20, hsakmt_version=0x0B0001,
            mem_width=256, mem_clk_max=1218, caches=_from_ip_discovery(32, 32, 16, 256, 4096, 64 * 1024)),
    _family("gfx1102", "RDNA3", "Navi33 (RX 7600)", "11.0.2", 110002, 0x47, "6.0.2",
            arrays_per_xcc=4, sh_per_se=2, cu_per_array=8, cus=32, waves=16, sdma=(2, 0), cp_queues=8,
            device_id=0x7480, asic_name="ip discovery", vram_size=8 * GiB, max_engine_clk_fcompute=2655,
            mec_fw_version=2140, sdma_fw_version=20, pcie_bandwidth_mbs=16000,
            mem_width=128, mem_clk_max=1125, caches=_from_ip_discovery(32, 32, 16, 256, 2048, 32 * 1024)),
    _family("gfx1103", "RDNA3", "Phoenix APU (Radeon 780M)", "11.0.1", 110003, 0x44, "6.0.1",
            arrays_per_xcc=2, sh_per_se=2, cu_per_array=6, cus=12, waves=16, sdma=(1, 0), cp_queues=8,
            device_id=0x15BF, asic_name="ip discovery", vram_size=512 * MiB, max_engine_clk_fcompute=2700,
            mec_fw_version=2140, sdma_fw_version=20, apu=True,
            mem_width=128, mem_clk_max=3200, caches=_from_ip_discovery(32, 32, 16, 256, 2048, 0)),
    _family("gfx1150", "RDNA3.5", "Strix Point APU (Radeon 890M)", "11.5.0", 110500, 0x43, "6.1.0",
            arrays_per_xcc=2, sh_per_se=2, cu_per_array=8, cus=16, waves=16, sdma=(1, 0), cp_queues=8,
            device_id=0x150E, asic_name="ip discovery", vram_size=512 * MiB, max_engine_clk_fcompute=2900,
            mec_fw_version=2140, sdma_fw_version=20, apu=True,
            mem_width=128, mem_clk_max=3750, caches=_from_ip_discovery(32, 32, 16, 256, 2048, 0)),
    _family("gfx1151", "RDNA3.5", "Strix Halo APU (Radeon 8060S)", "11.5.1", 110501, 0x4A, "6.1.1",
            arrays_per_xcc=4, sh_per_se=2, cu_per_array=10, cus=40, waves=16, sdma=(1, 0), cp_queues=8,
            device_id=0x1586, asic_name="ip discovery", vram_size=512 * MiB, max_engine_clk_fcompute=2900,
            mec_fw_version=2140, sdma_fw_version=20, apu=True,
            mem_width=256, mem_clk_max=4000, caches=_from_ip_discovery(32, 32, 16, 256, 2048, 32 * 1024)),
    _family("gfx1152", "RDNA3.5", "Krackan Point APU (Radeon 860M)", "11.5.2", 110502, 0x55, "6.1.2",
            arrays_per_xcc=2, sh_per_se=2, cu_per_array=4, cus=8, waves=16, sdma=(1, 0), cp_queues=8,
            device_id=0x1114, asic_name="ip discovery", vram_size=512 * MiB, max_engine_clk_fcompute=3000,
            mec_fw_version=2140, sdma_fw_version=20, apu=True,
            mem_width=128, mem_clk_max=3750, caches=_from_ip_discovery(32, 32, 16, 256, 2048, 0)),
    # ---- GFX12 / RDNA4 (sdma_v7_0.c uses the v6 packet header) ----
    _family("gfx1200", "RDNA4", "Navi44 (RX 9060 XT)", "12.0.0", 120000, 0x48, "7.0.0",
            arrays_per_xcc=4, sh_per_se=2, cu_per_array=8, cus=32, waves=16, sdma=(2, 0), cp_queues=8,
            device_id=0x7590, asic_name="ip discovery", vram_size=16 * GiB, max_engine_clk_fcompute=3130,
            mec_fw_version=3010, sdma_fw_version=12, hsakmt_version=0x0C0000, pcie_bandwidth_mbs=64000,
            mem_width=128, mem_clk_max=2518, caches=_from_ip_discovery(32, 32, 16, 256, 4096, 32 * 1024)),
    _family("gfx1201", "RDNA4", "Navi48 (RX 9070, Radeon AI PRO R9700)", "12.0.1", 120001, 0x4E, "7.0.1",
            arrays_per_xcc=8, sh_per_se=2, cu_per_array=8, cus=64, waves=16, sdma=(2, 0), cp_queues=8,
            device_id=0x7550, asic_name="ip discovery", vram_size=16 * GiB, max_engine_clk_fcompute=2970,
            mec_fw_version=3010, sdma_fw_version=12, hsakmt_version=0x0C0001, pcie_bandwidth_mbs=64000,
            mem_width=256, mem_clk_max=2518, caches=_from_ip_discovery(32, 32, 16, 256, 8192, 64 * 1024)),
)

FAMILIES: dict[str, Family] = {f.name: f for f in _ROWS}
_BY_GTV: dict[int, Family] = {f.gfx_target_version: f for f in _ROWS}
_BY_MACH: dict[int, Family] = {f.mach: f for f in _ROWS}
assert len(_BY_GTV) == len(_BY_MACH) == len(FAMILIES), "duplicate key in the family table"


def _known() -> str:
    return ", ".join(FAMILIES)


def gfx_name_from_target_version(v: int) -> str:
    """libhsakmt's rule: "gfx" + major (decimal) + minor (hex) + stepping (hex), with
    major = v/10000 % 100, minor = v/100 % 100, stepping = v % 100 (e.g. 90010 → gfx90a)."""
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise UnknownFamilyError(f"gfx_target_version {v!r} is not a GPU version (CPU nodes report 0)")
    return f"gfx{v // 10000 % 100}{v // 100 % 100:x}{v % 100:x}"


def family_from_gfx_target_version(v: int) -> Family:
    fam = _BY_GTV.get(v) if isinstance(v, int) and not isinstance(v, bool) else None
    if fam is None:
        try:
            hint = f" ({gfx_name_from_target_version(v)})"
        except UnknownFamilyError:
            hint = ""
        raise UnknownFamilyError(f"unknown gfx_target_version {v!r}{hint}; known: "
                                 + ", ".join(f"{f.gfx_target_version} ({f.name})" for f in _ROWS))
    return fam


def family_from_mach(mach: int) -> Family:
    """Look up by ELF EF_AMDGPU_MACH (e_flags bits 7:0; a whole e_flags word is accepted)."""
    if isinstance(mach, bool) or not isinstance(mach, int) or mach < 0:
        raise UnknownFamilyError(f"EF_AMDGPU_MACH {mach!r} is not an integer")
    fam = _BY_MACH.get(mach & 0xFF)
    if fam is None:
        raise UnknownFamilyError(f"unknown EF_AMDGPU_MACH {mach & 0xFF:#04x}; known: "
                                 + ", ".join(f"{f.mach:#04x} ({f.name})" for f in _ROWS))
    return fam


def parse_target_id(text: str) -> tuple[str, dict[str, bool]]:
    """Split a target id ("gfx942:sramecc+:xnack-", optionally "amdgcn-amd-amdhsa--" prefixed) into
    the lower-cased processor name and its feature settings ({"sramecc": True, "xnack": False})."""
    t = text.strip()
    if "--" in t:
        t = t.rsplit("--", 1)[1]
    proc, *feats = t.split(":")
    settings: dict[str, bool] = {}
    for f in feats:
        if len(f) < 2 or f[-1] not in "+-":
            raise UnknownFamilyError(f"malformed target id {text!r}: feature {f!r} must end in + or -")
        settings[f[:-1].lower()] = f[-1] == "+"
    return proc.lower(), settings


def get_family(key: str | int | Family) -> Family:
    """A Family from a gfx name (case-insensitive, target ids such as "gfx942:sramecc+:xnack-"
    accepted), a Family, or a gfx_target_version int."""
    if isinstance(key, Family):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return family_from_gfx_target_version(key)
    if isinstance(key, str):
        name, _ = parse_target_id(key)
        fam = FAMILIES.get(name)
        if fam is None:
            raise UnknownFamilyError(f"unknown GPU family {key!r}; known: {_known()}")
        return fam
    raise UnknownFamilyError(f"cannot look up a GPU family by {type(key).__name__} {key!r}; "
                             f"use a gfx name, a gfx_target_version or a Family")
