"""The declarative machinery behind the PM4, SDMA and AQL tables.

A packet layout is written once, as a list of fields (name, dword index, bit range, the family
variants it exists in). From that one description this module derives

* a decoder: Python source generated per (layout, variant) and compiled with exec(), so decoding a
  packet is one call of straight-line code (no table interpretation per packet — the emulated GPU
  decodes every packet it executes);
* a builder: a generic encoder that range-checks every value, writes it, and re-reads every field
  it wrote, so overlapping fields (a whole control word and its named bits) must agree.

Conventions shared by all engines:

* Field pieces are ``(dword, bit_position, width, value_shift)``: bits ``[pos, pos+width)`` of dword
  ``dword`` hold bits ``[value_shift, value_shift+width)`` of the field's value. A 64-bit address
  split over ADDR_LO/ADDR_HI is one field with two pieces; an address whose low bits are not
  stored (dword/qword alignment) simply has no piece for them.
* ``v``: the variant keys a field/layout exists in (PM4: gfx major 9/10/11/12, SDMA: packet
  generation 4/5/6). ``None`` (the default) means every variant, including the family-less one.
* ``view=True`` marks a field that overlaps named sub-fields (e.g. ACQUIRE_MEM ``gcr_cntl`` and
  its ``gcr_*`` bits). Views are written first by the builder; the round-trip tests draw values for
  the non-view fields only.
* ``Nat`` declares a derived field in natural units (``byte_count`` = ``count`` + 1, ``reg`` =
  ``reg_offset`` + 0x2C00). Decoding emits both; the builder accepts either (see `Nat`).
"""
from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from kfdtrace.errors import PacketError

ALL = None  # field/layout exists in every variant


# ------------------------------------------------------------------------------------------------
# Packet
# ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Packet:
    """One decoded packet. ``fields`` holds ints (or lists of ints for arrays such as register
    values); the named bits of a control word that is itself a field (ACQUIRE_MEM ``gcr_*`` next
    to ``gcr_cntl``, DISPATCH_DIRECT bits next to ``dispatch_initiator``, RELEASE_MEM cache
    actions, PM4 ``shader_type``/``predicate``) appear only when set — read them with
    ``fields.get(name, 0)``. ``raw`` is the packet's dwords exactly as found. ``refs`` lists the
    memory the packet points at for more packets: ``(kind, address, size_dwords)``.
    ``depth``/``parent`` locate packets decoded from an indirect buffer: depth 0 is the stream
    itself, ``parent`` the index (in the returned list) of the packet whose ref led there.
    Besides the table's names, ``name`` can be UNKNOWN (header not in the table: opcode/op in
    ``fields``, ``error`` says which) and TRUNCATED (the stream ends inside the packet:
    ``fields["needed"]`` dwords were expected); PM4 adds TYPE0 and TYPE2_NOP."""
    engine: str
    offset: int
    name: str
    length: int
    fields: dict
    raw: tuple
    error: str | None = None
    refs: list = field(default_factory=list)
    depth: int = 0
    parent: int | None = None

    def summary(self, family=None) -> str:
        """One line: the name and its key fields (register names, event names, hex addresses)."""
        fmt = SUMMARY.get(self.engine)
        return fmt(self, family) if fmt else default_summary(self)

    def to_dict(self) -> dict:
        return {"engine": self.engine, "offset": self.offset, "name": self.name,
                "length": self.length, "fields": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                                   for k, v in self.fields.items()},
                "raw": list(self.raw), "error": self.error,
                "refs": [list(r) for r in self.refs], "depth": self.depth, "parent": self.parent}


#: engine name -> summary formatter (each engine module registers its own)
SUMMARY: dict[str, Callable[..., str]] = {}
#: engine name -> {packet name: {field name: Field}} for the formatters (flags, hex widths)
FIELD_META: dict[str, dict[str, dict[str, "Field"]]] = {}


def fmt_value(v: Any) -> str:
    """Small ints in decimal, the rest in hex; lists shortened to 8 items."""
    if isinstance(v, (list, tuple)):
        items = [fmt_value(x) for x in v[:8]]
        more = f", …+{len(v) - 8}" if len(v) > 8 else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(v, int) and (v >= 10 or v < -9):
        return hex(v)
    return str(v)


def default_summary(p: Packet, skip: Iterable[str] = (), extra: Iterable[str] = (),
                    render: dict | None = None) -> str:
    """NAME k=v … with zero-valued small bit fields (flags, selectors) left out: on one line they
    are noise. ``render`` maps a field name to a value formatter."""
    meta = FIELD_META.get(p.engine, {}).get(p.name, {})
    parts = [p.name, *extra]
    skip = set(skip)
    for k, v in p.fields.items():
        if k in skip:
            continue
        m = meta.get(k)
        if v == 0 and m is not None and (m.bits < 16 or m.view):
            continue
        parts.append(f"{k}={render[k](v) if render and k in render else fmt_value(v)}")
    for kind, addr, size in p.refs:
        parts.append(f"-> {kind}@{addr:#x}+{size}dw")
    if p.error:
        parts.append(f"!! {p.error}")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------
# Field declarations
# ------------------------------------------------------------------------------------------------
def _bits(spec) -> tuple[int, int]:
    """'5:0' / (5, 0) / 17 -> (lo, width)."""
    if isinstance(spec, int):
        return spec, 1
    if isinstance(spec, str):
        hi, _, lo = spec.partition(":")
        hi, lo = int(hi), int(lo or hi)
    else:
        hi, lo = spec
    if not 0 <= lo <= hi <= 31:
        raise ValueError(f"bad bit range {spec!r}")
    return lo, hi - lo + 1


class Field:
    __slots__ = ("name", "pieces", "v", "view", "signed", "default", "array", "mask", "bits", "sparse")

    def __init__(self, name: str, pieces, *, v=ALL, view=False, signed=False, default=None, array=0,
                 sparse=False):
        self.name = name
        self.sparse = sparse          # decoded only when nonzero (named bits of a control word)
        self.pieces = tuple(pieces)
        self.v = None if v is None else frozenset(v if isinstance(v, (tuple, list, set, frozenset)) else (v,))
        self.view = view
        self.signed = signed
        self.default = default
        self.array = array            # >0: `array` elements, element i at dword offset +2*i
        mask = 0
        for _, _, w, voff in self.pieces:
            mask |= ((1 << w) - 1) << voff
        self.mask = mask
        self.bits = mask.bit_length()

    def applies(self, key) -> bool:
        return self.v is None or key in self.v

    def dwords(self) -> set[int]:
        out = set()
        for dw, *_ in self.pieces:
            out.update(dw + 2 * i for i in range(max(self.array, 1)))
        return out

    # -- codegen ------------------------------------------------------------------------------
    def expr(self, shift_dw: int = 0) -> str:
        parts = []
        for dw, pos, w, voff in self.pieces:
            e = f"d{dw + shift_dw}"
            if pos:
                e = f"({e} >> {pos})"
            if pos + w < 32:
                e = f"({e} & {hex((1 << w) - 1)})"
            if voff:
                e = f"({e} << {voff})"
            parts.append(e)
        e = " | ".join(parts)
        if self.signed:
            e = f"_sx({e}, {self.bits})"
        return e

    def extract(self, d: list, p: int, n: int) -> Any:
        """Slow path (fields of a packet shorter than its layout): None if a piece is missing."""
        vals = []
        for i in range(max(self.array, 1)):
            v = 0
            for dw, pos, w, voff in self.pieces:
                k = dw + 2 * i
                if k >= n:
                    return None
                v |= ((d[p + k] >> pos) & ((1 << w) - 1)) << voff
            vals.append(_sx(v, self.bits) if self.signed else v)
        return vals if self.array else vals[0]

    def write(self, dws: list[int], value: int, where: str) -> None:
        vals = value if self.array else [value]
        if self.array:
            if not isinstance(value, (list, tuple)) or len(value) > self.array:
                raise PacketError(f"{where}: {self.name} takes a list of at most {self.array} values")
        for i, val in enumerate(vals):
            val = _check_int(val, self, where)
            for dw, pos, w, voff in self.pieces:
                m = (1 << w) - 1
                k = dw + 2 * i
                dws[k] = (dws[k] & ~(m << pos)) | (((val >> voff) & m) << pos)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.pieces!r}, v={sorted(self.v) if self.v else None})"


def _sx(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def _check_int(val, f: Field, where: str) -> int:
    if isinstance(val, bool):
        val = int(val)
    if not isinstance(val, (int, np.integer)):
        raise PacketError(f"{where}: {f.name} must be an integer, got {type(val).__name__} {val!r}")
    val = int(val)
    if f.signed:
        lo, hi = -(1 << (f.bits - 1)), 1 << (f.bits - 1)
        if not lo <= val < hi:
            raise PacketError(f"{where}: {f.name}={val} does not fit a signed {f.bits}-bit field")
        val &= (1 << f.bits) - 1
    if val < 0 or val & ~f.mask:
        why = "is not aligned / does not fit" if val >= 0 else "is negative"
        raise PacketError(f"{where}: {f.name}={val:#x} {why} (field mask {f.mask:#x})")
    return val


def B(name: str, dw: int, bits, *, v=ALL, view=False, default=None, sparse=False) -> Field:
    """Bits ``bits`` (reference notation "hi:lo" or a bit number) of dword ``dw``. ``sparse``:
    the decoder emits the field only when it is nonzero (for the named bits of a control word
    whose whole value is also a field — keeps decoded dicts small and readable)."""
    lo, w = _bits(bits)
    return Field(name, [(dw, lo, w, 0)], v=v, view=view, default=default, sparse=sparse)


def D(name: str, dw: int, *, v=ALL, signed=False, default=None) -> Field:
    """A whole dword."""
    return Field(name, [(dw, 0, 32, 0)], v=v, signed=signed, default=default)


def Q(name: str, lo_dw: int, hi_dw: int | None = None, lo_bits="31:0", hi_bits="31:0", *, v=ALL,
      signed=False, array=0) -> Field:
    """A 64-bit value (address) split over a LO and a HI dword; ``lo_bits`` says which bits of the
    LO dword hold the value's bits of the same number (alignment bits are absent)."""
    hi_dw = lo_dw + 1 if hi_dw is None else hi_dw
    lo, lw = _bits(lo_bits)
    hl, hw = _bits(hi_bits)
    return Field(name, [(lo_dw, lo, lw, lo), (hi_dw, hl, hw, 32)], v=v, signed=signed, array=array)


def P(name: str, *pieces, v=ALL, view=False) -> Field:
    """Explicit pieces: (dword, "hi:lo", value_shift)."""
    out = []
    for dw, bits, voff in pieces:
        lo, w = _bits(bits)
        out.append((dw, lo, w, voff))
    return Field(name, out, v=v, view=view)


class _Get(dict):
    def __missing__(self, key):
        return f"F.get({key!r}, 0)"


@dataclass(frozen=True)
class Nat:
    """A field in natural units derived from a raw one.

    ``dec`` is an expression over raw field names in braces (``"{count} + 1"``); ``enc(value,
    ctx)`` maps the natural value back to the raw one (ctx: {"family": resolved family or None,
    plus the packet's other given fields}). ``guard`` (optional expression) says when the natural
    field exists. Building: the natural name always means natural units; given together with the
    raw name (as in a decoded ``fields`` dict) the two must agree. With ``raw_alias`` the raw name
    given alone is read as the natural quantity too — ``build("COPY_LINEAR", count=4096)`` copies
    4096 bytes and stores COUNT 4095."""
    name: str
    raw: str
    dec: str
    enc: Callable[[Any, dict], int]
    guard: str | None = None
    raw_alias: bool = False

    def __post_init__(self):
        object.__setattr__(self, "_value", eval("lambda F: " + self.dec.format_map(_Get())))
        object.__setattr__(self, "_holds", eval("lambda F: " + (self.guard or "True").format_map(_Get())))

    def value(self, fields: dict):
        """The natural value that the raw ``fields`` decode to."""
        return self._value(fields)

    def holds(self, fields: dict) -> bool:
        return bool(self._holds(fields))


class Layout:
    """One packet layout: fields, fixed length or a variable tail, the variants it exists in and
    engine-specific keys (PM4 opcode, SDMA op/sub-op and header selector, AQL type/format)."""

    def __init__(self, name: str, fields: Iterable[Field] = (), *, length: int | None = None,
                 tail: str | None = None, v=ALL, refs: tuple | None = None, nat: Iterable[Nat] = (),
                 **keys):
        self.name = name
        self.fields = tuple(fields)
        self.length = length
        self.tail = tail
        self.v = None if v is None else frozenset(v if isinstance(v, (tuple, list, set, frozenset)) else (v,))
        self.refs = refs
        self.nat = tuple(nat)
        self.keys = keys
        used = 1  # dword 0 is the header
        for f in self.fields:
            used = max(used, max(f.dwords()) + 1)
        if tail is not None:  # variable length: fixed part, then the tail list up to the end
            self.fixed = keys.pop("tail_start", used)
            self.length = None
        else:
            if length is not None and used > length:
                raise ValueError(f"{name}: fields reach dword {used - 1} but length is {length}")
            self.length = self.fixed = length if length is not None else used

    def applies(self, key) -> bool:
        return self.v is None or key in self.v

    def __getattr__(self, item):
        try:
            return self.__dict__["keys"][item]
        except KeyError:
            raise AttributeError(item) from None

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, length={self.length}, tail={self.tail!r})"


# ------------------------------------------------------------------------------------------------
# Compiled (layout, variant)
# ------------------------------------------------------------------------------------------------
class Compiled:
    """A layout specialised to one variant: its field list, decoder and builder."""

    def __init__(self, layout: Layout, key, engine: str):
        self.layout = layout
        self.key = key
        self.engine = engine
        self.name = layout.name
        self.fields = [f for f in layout.fields if f.applies(key)]
        self.by_name = {f.name: f for f in self.fields}
        self.nat = [n for n in layout.nat if n.raw in self.by_name]
        self.tail = layout.tail
        self.fixed = layout.fixed
        self.length = layout.length

    # -- decoding -----------------------------------------------------------------------------
    def body_code(self, n_expr: str, indent: str = "    ") -> list[str]:
        """Lines that read the dwords, compute every field into v_<name>, build ``f`` (the dict),
        ``r`` (the refs list) and ``raw`` (the packet's dwords). The caller binds d (dword list),
        p (start) and n (length)."""
        used = set()
        for f in self.fields:
            used |= f.dwords()
        if self.tail is None:
            used |= set(range(self.length))
        lines = [f"{indent}d{i} = d[p + {i}]" if i else f"{indent}d0 = d[p]" for i in sorted(used)]
        items = []
        sparse: dict[int, list[Field]] = {}
        for f in self.fields:
            if f.sparse:
                sparse.setdefault(f.pieces[0][0], []).append(f)
                continue
            if f.array:
                el = []
                for i in range(f.array):
                    el.append(f.expr(2 * i))
                lines.append(f"{indent}v_{f.name} = [{', '.join(el)}]")
            else:
                lines.append(f"{indent}v_{f.name} = {f.expr()}")
            items.append(f"{f.name!r}: v_{f.name}")
        if self.tail is not None:
            lines.append(f"{indent}v_{self.tail} = d[p + {self.fixed}:p + {n_expr}]")
            items.append(f"{self.tail!r}: v_{self.tail}")
        lines.append(f"{indent}f = {{{', '.join(items)}}}")
        for dw, fs in sorted(sparse.items()):
            group = 0
            for f in fs:
                group |= f.mask << f.pieces[0][1]
            lines.append(f"{indent}if d{dw} & {hex(group)}:")
            for f in fs:
                _, pos, w, _ = f.pieces[0]
                if w == 1:
                    lines.append(f"{indent}    if d{dw} & {hex(1 << pos)}: f[{f.name!r}] = 1")
                else:
                    lines.append(f"{indent}    v = {f.expr()}")
                    lines.append(f"{indent}    if v: f[{f.name!r}] = v")
        for nat in self.nat:
            expr = nat.dec.format(**{k: f"v_{k}" for k in self.by_name})
            if nat.guard:
                g = nat.guard.format(**{k: f"v_{k}" for k in self.by_name})
                lines.append(f"{indent}if {g}: f[{nat.name!r}] = {expr}")
            else:
                lines.append(f"{indent}f[{nat.name!r}] = {expr}")
        if self.layout.refs and all(x in self.by_name for x in self.layout.refs[1:]):
            kind, a, s = self.layout.refs
            lines.append(f"{indent}r = [({kind!r}, v_{a}, v_{s})]")
        else:
            lines.append(f"{indent}r = []")
        if self.tail is None:
            lines.append(f"{indent}raw = ({''.join(f'd{i}, ' for i in range(self.length))})")
        else:
            lines.append(f"{indent}raw = tuple(d[p:p + {n_expr}])")
        return lines

    def slow_fields(self, d: list, p: int, n: int) -> dict:
        """Fields of a packet whose length does not match the layout: whatever fits."""
        out = {}
        for f in self.fields:
            val = f.extract(d, p, n)
            if val is not None and not (f.sparse and not val):
                out[f.name] = val
        if self.tail is not None and n > self.fixed:
            out[self.tail] = d[p + self.fixed:p + n]
        return out

    # -- building -----------------------------------------------------------------------------
    def encode(self, kw: dict, ctx: dict, where: str) -> tuple[list[int], dict]:
        """The packet's dwords (header bits that the engine owns left 0) and the fields given."""
        kw = dict(kw)
        ctx = {**kw, **ctx}
        for nat in self.nat:
            if nat.name in kw:
                natv = kw.pop(nat.name)
                if nat.raw in kw and nat.holds(kw) and nat.value(kw) == natv:
                    continue                      # raw and natural agree (a decoded fields dict)
                if nat.raw in kw and kw[nat.raw] != natv:
                    raise PacketError(f"{where}: {nat.raw}={kw[nat.raw]} contradicts {nat.name}={natv}")
                kw[nat.raw] = nat.enc(natv, ctx)
            elif nat.raw_alias and nat.raw in kw and nat.holds(kw):
                kw[nat.raw] = nat.enc(kw[nat.raw], ctx)
        tail = None
        if self.tail is not None:
            tail = kw.pop(self.tail, None)
            if tail is None:
                tail = []
            if isinstance(tail, (bytes, bytearray)):
                tail = list(np.frombuffer(tail, "<u4")) if len(tail) % 4 == 0 else None
            if tail is None or not isinstance(tail, (list, tuple, np.ndarray)):
                raise PacketError(f"{where}: {self.tail} must be a list of dwords")
            tail = [_u32(x, self.tail, where) for x in tail]
        unknown = [k for k in kw if k not in self.by_name]
        if unknown:
            names = sorted(self.by_name) + ([self.tail] if self.tail else []) + [n.name for n in self.nat]
            on = ("" if self.key is None else f" on gfx{self.key}" if self.engine == "pm4"
                  else f" in SDMA v{self.key} packets" if self.engine == "sdma" else "")
            raise PacketError(f"{where} has no field {unknown[0]!r}{on}; fields: {', '.join(names)}")
        dws = [0] * self.fixed
        given = {}
        for f in self.fields:
            if f.name in kw:
                given[f.name] = kw[f.name]
            elif f.default is not None:
                given[f.name] = f.default
        for f in sorted(self.fields, key=lambda f: not f.view):
            if f.name in given:
                f.write(dws, given[f.name], where)
        if tail is not None:
            dws.extend(tail)
        return dws, given

    def verify(self, dws: list[int], given: dict, where: str) -> None:
        for name, want in given.items():
            f = self.by_name[name]
            got = f.extract(dws, 0, len(dws))
            w = [int(x) for x in want] if f.array else int(want)
            if f.array:
                w = w + [0] * (f.array - len(w))
            if got != w:
                raise PacketError(f"{where}: {name}={want!r} conflicts with another field "
                                  f"(encodes as {got!r})")


def _u32(x, name: str, where: str) -> int:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= int(x) <= 0xFFFFFFFF:
        return int(x)
    if isinstance(x, bool):
        return int(x)
    raise PacketError(f"{where}: {name} element {x!r} is not a 32-bit unsigned value")


def compile_function(src: str, name: str, env: dict) -> Callable:
    ns = dict(env)
    ns["_sx"] = _sx
    exec(compile(src, f"<packets:{name}>", "exec"), ns)
    return ns[name]


def ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


# ------------------------------------------------------------------------------------------------
# Families and inputs
# ------------------------------------------------------------------------------------------------
_FAMILY_CACHE: dict = {}


def resolve_family(family):
    """None, a Family (anything with gfx_major/sdma_gen), a gfx name or a gfx_target_version."""
    if family is None or hasattr(family, "gfx_major"):
        return family
    try:
        return _FAMILY_CACHE[family]
    except (KeyError, TypeError):
        pass
    try:
        from kfdtrace.abi.families import get_family
    except ImportError as e:  # pragma: no cover - the registry ships with the package
        raise PacketError(f"GPU family registry unavailable ({e}); pass a Family object") from e
    fam = get_family(family)
    try:
        _FAMILY_CACHE[family] = fam
    except TypeError:
        pass
    return fam


def gfx_key(family) -> int | None:
    """PM4 variant key: the gfx major (9, 10, 11, 12) or None."""
    if family is None:
        return None
    k = getattr(family, "gfx_major", None)
    return k if k is not None else resolve_family(family).gfx_major


def sdma_key(family) -> int:
    """SDMA variant key: the packet generation (4, 5, 6); None means v4 (every GFX9-family part)."""
    if family is None:
        return 4
    k = getattr(family, "sdma_gen", None)
    return k if k is not None else resolve_family(family).sdma_gen


def followed_ibs(pkt: Packet, kind: str | None, follow):
    """The indirect buffers a packet references (`kind` refs, or every ref if None) that
    `follow(addr, ndwords)` can read: yields (dwords, length). A reference it cannot read marks
    the packet's `error` and is skipped — a bad address must not stop a walk."""
    for k, addr, size in pkt.refs:
        if (kind is not None and k != kind) or size == 0:
            continue
        try:
            data = follow(addr, size)
        except Exception as e:
            pkt.error = f"cannot read IB at {addr:#x}: {e}"
            continue
        if data is not None:
            ib = as_dwords(data)
            yield ib, min(len(ib), size)


def as_dwords(data) -> list[int]:
    """A list of Python ints from a list/tuple of dwords, a numpy array or little-endian bytes."""
    if isinstance(data, list):
        return data
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint32:
            return data.tolist()
        if data.dtype == np.uint8:
            return as_dwords(data.tobytes())
        if data.dtype.kind in "iu":
            return (data.astype(np.int64) & 0xFFFFFFFF).tolist()
        raise PacketError(f"cannot decode a numpy array of dtype {data.dtype}")
    if isinstance(data, (bytes, bytearray, memoryview)):
        b = bytes(data)
        if len(b) % 4:
            raise PacketError(f"{len(b)} bytes is not a whole number of dwords (4 bytes each)")
        return np.frombuffer(b, "<u4").tolist()
    if isinstance(data, tuple):
        return list(data)
    try:
        return [int(x) & 0xFFFFFFFF for x in data]
    except TypeError:
        raise PacketError(f"cannot decode {type(data).__name__}: expected dwords or bytes") from None


def as_array(data) -> np.ndarray:
    """A uint32 numpy array (no copy when already one)."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint32:
            return data
        if data.dtype == np.uint8:
            return as_array(data.tobytes())
        return (data.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
    if isinstance(data, (bytes, bytearray, memoryview)):
        b = bytes(data)
        if len(b) % 4:
            raise PacketError(f"{len(b)} bytes is not a whole number of dwords (4 bytes each)")
        return np.frombuffer(b, "<u4")
    try:
        return np.array([int(x) & 0xFFFFFFFF for x in data], dtype=np.uint32)
    except (TypeError, ValueError):
        raise PacketError(f"cannot decode {type(data).__name__}: expected dwords or bytes") from None


class no_gc:
    """Pause the cyclic garbage collector while a decode allocates its Packet objects: they hold
    no cycles, and a million container allocations otherwise trigger repeated full collections
    that cost more than the decoding itself."""
    __slots__ = ("was",)

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def walk_chain(nxt: list[int], start: int, end: int) -> list[int]:
    """Follow next-packet pointers from ``start`` until ``end`` (plain loop, for short streams)."""
    out = []
    app = out.append
    p = start
    while p < end:
        app(p)
        p = nxt[p]
    return out


def chain_offsets(ln: np.ndarray, candidates: np.ndarray | None = None, chunk: int = 1024,
                  hops: int = 16) -> np.ndarray:
    """Offsets of the packet chain that starts at 0, given the length a packet would have at every
    dword position (``ln`` >= 1, computed vectorised by the caller).

    Following the chain is sequential, so instead of one Python-level hop per packet this runs one
    speculative walker per ``chunk`` dwords, all in lockstep as numpy gathers. Walker k starts at
    the first ``candidates`` position of its chunk (a dword that looks like a header) and records
    the positions it visits until it leaves the chunk. The true chain is then stitched chunk by
    chunk: where it enters a chunk at a position the chunk's walker visited, the walker's path
    *is* the chain from there on (same ``ln``); where it does not, it is followed hop by hop
    (first ``hops`` hops vectorised for every chunk at once) until it meets a walker. The result
    is exact for any input — speculation only affects speed."""
    n = len(ln)
    nxt = np.minimum(np.arange(n, dtype=np.int64) + ln, n)
    if n <= 4 * chunk:
        return np.array(walk_chain(nxt.tolist(), 0, n), dtype=np.int64)
    kk = -(-n // chunk)
    cols = np.arange(kk)
    bounds = cols * chunk
    bnext = np.minimum(bounds + chunk, n)
    starts = bounds
    if candidates is not None:
        cpos = np.flatnonzero(candidates)
        if len(cpos):
            i = np.searchsorted(cpos, bounds)
            first = cpos[np.minimum(i, len(cpos) - 1)]
            starts = np.where((i < len(cpos)) & (first < bnext), first, bounds)
            starts[0] = 0
    nxt_ext = np.append(nxt, n)
    cur = starts
    steps = [cur]
    while True:
        for _ in range(8):
            cur = nxt_ext[cur]
            steps.append(cur)
        if (cur >= bnext).all():
            break
    path = np.stack(steps)                        # rows: steps, columns: walkers
    nrows = len(steps)
    valid = path < bnext                          # a prefix of each column
    exit_ = path[valid.sum(axis=0), cols]         # first position past each walker's chunk
    mark = np.full(n + 1, -1, dtype=np.int32)     # position -> its row in its chunk's walker path
    r, c = np.nonzero(valid)
    mark[path[r, c]] = r
    # from every chunk exit, the first `hops` hops at once: where does the chain meet a walker?
    hop = np.empty((hops + 1, kk), dtype=np.int64)
    hop[0] = exit_
    for j in range(1, hops + 1):
        hop[j] = nxt_ext[hop[j - 1]]
    mk = mark[hop]
    met = (mk >= 0) | (hop >= n)
    jfirst = met.argmax(axis=0)
    resolved = met.any(axis=0).tolist()
    res_pos = hop[jfirst, cols].tolist()
    res_row = mk[jfirst, cols].tolist()
    jl = jfirst.tolist()
    exit_l = exit_.tolist()
    ks, rows, hopped, walked = [0], [0], [], []
    k = 0
    while True:                                   # one iteration per chunk the chain touches
        if exit_l[k] >= n:
            break
        if resolved[k]:
            if jl[k]:
                hopped.append(k)
            t = res_pos[k]
            if t >= n:
                break
            row = res_row[k]
        else:                                     # rare: more than `hops` hops out of sync
            t = exit_l[k]
            while t < n and mark[t] < 0:
                walked.append(t)
                t = int(nxt[t])
            if t >= n:
                break
            row = int(mark[t])
        k = t // chunk
        ks.append(k)
        rows.append(row)
    first_row = np.full(kk, nrows, dtype=np.int64)
    first_row[ks] = rows
    on = np.zeros(n + 1, dtype=bool)
    on[path[valid & (np.arange(nrows)[:, None] >= first_row)]] = True
    if hopped:
        hc = np.array(hopped)
        sub = hop[:, hc]
        on[sub[np.arange(hops + 1)[:, None] < jfirst[hc]]] = True
    if walked:
        on[walked] = True
    return np.flatnonzero(on[:n])


def truncated(engine: str, d: list, p: int, e: int, o: int, what: str, need: int, fields=None) -> Packet:
    have = e - p
    return Packet(engine, o, "TRUNCATED", have, dict(fields or {}, needed=need),
                  tuple(d[p:e]), f"{what} needs {need} dwords, only {have} left")
