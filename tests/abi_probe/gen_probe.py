"""Generate a C probe from a kfd_ioctl.h so a C compiler can tell us the real ABI.

The probe is derived from the header itself, not from our Python definitions: every top-level
`struct kfd_* { ... }` (members parsed, including anonymous unions and inline named structs),
every `#define AMDKFD_IOC_*`, every numeric object-like `#define` and every enumerator. Compiled
and run, it prints JSON:

    {"version": [major, minor],
     "requests": {"AMDKFD_IOC_X": value, ...},
     "constants": {"NAME": value, ...},
     "structs": {"kfd_x": {"size": n, "members": {"path": [offset, size, signed], ...}}, ...}}

`size` is -1 for a flexible array member; `signed` is 1/0 for integer members, -1 for aggregates.

Usage: python3 gen_probe.py /usr/include/linux/kfd_ioctl.h > probe.c
       cc -I tests/abi_probe -o probe probe.c && ./probe
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass


@dataclass
class Member:
    path: str          # dotted for members of inline named structs ("wave_state.x")
    flexible: bool     # `name[]`
    scalar: bool       # plain integer type (not struct/union/array)


@dataclass
class HeaderInfo:
    structs: dict[str, list[Member]]
    requests: list[str]
    constants: list[str]


def _strip(text: str) -> str:
    text = text.replace("\\\n", " ")
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _match_brace(text: str, open_at: int) -> int:
    """Index of the '}' closing the '{' at open_at."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError("unbalanced braces in header")


def _split_top(body: str) -> list[str]:
    """Declarations of a struct body: split at ';' outside nested braces."""
    out, depth, cur = [], 0, []
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == ";" and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        raise ValueError(f"declaration without ';': {''.join(cur).strip()!r}")
    return [d for d in out if d]


def _members(body: str, prefix: str = "") -> list[Member]:
    out: list[Member] = []
    for decl in _split_top(body):
        decl = " ".join(decl.split())
        m = re.fullmatch(r"(union|struct)\s*\{(.*)\}\s*(\w*)", decl, re.S)
        if m:  # inline aggregate: anonymous (members belong to the parent) or named
            if m.group(3):
                out.append(Member(prefix + m.group(3), False, False))
                out += _members(m.group(2), prefix + m.group(3) + ".")
            else:
                out += _members(m.group(2), prefix)
            continue
        if "," in decl or ":" in decl or "(" in decl:
            raise ValueError(f"unsupported member declaration {decl!r}")
        m = re.fullmatch(r"(.+?)\s*\b(\w+)\s*(\[\s*(\w*)\s*\])?", decl)
        if not m or not m.group(1).strip():
            raise ValueError(f"cannot parse member declaration {decl!r}")
        ctype, is_array = m.group(1).strip(), m.group(3) is not None
        out.append(Member(prefix + m.group(2), is_array and not m.group(4),
                          not is_array and not ctype.startswith(("struct", "union"))))
    return out


def parse_header(text: str) -> HeaderInfo:
    text = _strip(text)
    structs: dict[str, list[Member]] = {}
    pos = 0
    while (m := re.compile(r"\bstruct\s+(kfd_\w+)\s*\{").search(text, pos)):
        end = _match_brace(text, m.end() - 1)
        if text[:m.start()].count("{") == text[:m.start()].count("}"):  # top level only
            structs[m.group(1)] = _members(text[m.end():end])
        pos = end + 1
    requests, constants = [], []
    for name, params, value in re.findall(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(\(?)[ \t]*(.*)$", text, re.M):
        value = value.strip()
        if name.startswith("AMDKFD_IOC_"):
            requests.append(name)
        elif not params and value and not value.startswith('"') and not name.endswith("_H_INCLUDED"):
            constants.append(name)
    for body in re.findall(r"\benum\s*\w*\s*\{(.*?)\}", text, re.S):
        constants += [e.split("=")[0].strip() for e in body.split(",") if e.strip()]
    return HeaderInfo(structs, requests, constants)


def probe_source(header_path: str, info: HeaderInfo) -> str:
    """C source printing the JSON described in the module docstring."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", f'#include "{header_path}"',
             "#define MSZ(T, m) sizeof(((T *)0)->m)",
             "#define MSIGNED(T, m) ((__typeof__(((T *)0)->m))-1 < 0)",
             "int main(void) {",
             '  printf("{\\"version\\": [%d, %d],\\n", KFD_IOCTL_MAJOR_VERSION, KFD_IOCTL_MINOR_VERSION);']

    def block(key: str, items: list[str], last: bool = False) -> None:
        lines.append(f'  printf("\\"{key}\\": {{\\n");')
        for i, item in enumerate(items):
            lines.append(item + ("" if i == len(items) - 1 else '  printf(",\\n");'))
        lines.append(f'  printf("}}{"" if last else ","}\\n");')

    block("requests", [f'  printf("\\"{r}\\": %lu", (unsigned long)({r}));' for r in info.requests])
    block("constants", [f'  printf("\\"{c}\\": %lld", (long long)({c}));' for c in info.constants])
    items = []
    for name, members in info.structs.items():
        t = f"struct {name}"
        body = [f'  printf("\\"{name}\\": {{\\"size\\": %zu, \\"members\\": {{", sizeof({t}));']
        for i, mem in enumerate(members):
            sep = "" if i == 0 else ", "
            size = "-1" if mem.flexible else "%zu"
            sign = "%d" if mem.scalar else "-1"
            args = [f"offsetof({t}, {mem.path})"] + ([] if mem.flexible else [f"MSZ({t}, {mem.path})"]) \
                + ([f"(int)MSIGNED({t}, {mem.path})"] if mem.scalar else [])
            body.append(f'  printf("{sep}\\"{mem.path}\\": [%zu, {size}, {sign}]", {", ".join(args)});')
        body.append('  printf("}}");')
        items.append("\n".join(body) + "\n")
    block("structs", items, last=True)
    lines += ['  printf("}\\n");', "  return 0;", "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "/usr/include/linux/kfd_ioctl.h"
    with open(path) as f:
        sys.stdout.write(probe_source(path, parse_header(f.read())))
