"""`kfdtrace decode` end to end through kfdtrace.cli.main, on the shipped example traces."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from kfdtrace.cli import main
from kfdtrace.packets import pm4

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(capsys, *argv):
    rc = main(["decode", *argv])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def test_readme_quick_start_decodes_example_pm4(capsys):
    rc, lines, err = run(capsys, "--engine", "pm4", "--gpu", "gfx942", "traces/example.pm4.hex")
    assert rc == 0 and err == ""
    names = [line.split()[1] for line in lines]
    assert names == ["ACQUIRE_MEM"] + ["SET_SH_REG"] * 5 + ["DISPATCH_DIRECT", "RELEASE_MEM", "WAIT_REG_MEM",
                                                            "NOP", "NOP", "NOP"]
    offsets = [int(line.split()[0]) for line in lines]
    assert offsets == [0, 7, 11, 15, 18, 23, 27, 32, 40, 47, 48, 49]
    text = "\n".join(lines)
    assert "COMPUTE_PGM_LO=0x3a123401 COMPUTE_PGM_HI=0x7f" in text
    assert "COMPUTE_PGM_RSRC3=0" in text                       # at 0x2E2D on gfx942
    assert "COMPUTE_USER_DATA_0=0x1000 COMPUTE_USER_DATA_1=0x7f3a" in text
    rel = lines[7]
    for part in ("CACHE_FLUSH_AND_INV_TS_EVENT(0x14)", "event_index=5", "int_sel=2", "data_sel=1",
                 "addr=0x7f3a00002008", "data=5", "int_ctxid=5", "tc_wb_action_ena=1"):
        assert part in rel, (part, rel)
    assert "dim_x=0x10" in lines[6] and "compute_shader_en=1" in lines[6]
    assert "poll_addr=0x7f3a00002008" in lines[8] and "reference=5" in lines[8]
    assert "filler" in lines[-1]


def test_json_lines_and_binary_input(capsys, tmp_path):
    rc, lines, _ = run(capsys, "--engine", "pm4", "--gpu", "gfx942", "--json", "traces/example.pm4.hex")
    pk = [json.loads(line) for line in lines]
    rel = next(p for p in pk if p["name"] == "RELEASE_MEM")
    assert rel["fields"]["int_sel"] == 2 and rel["fields"]["addr"] == 0x7F3A00002008 and rel["length"] == 8
    acq = pk[0]
    assert acq["name"] == "ACQUIRE_MEM" and acq["length"] == 7 and acq["fields"]["coher_cntl"] == 0x28C40000
    # the same packets as binary (auto-detected), and through stdin
    words = [w for p in pk for w in p["raw"]]
    blob = b"".join(w.to_bytes(4, "little") for w in words)
    (tmp_path / "ring.bin").write_bytes(blob)
    rc, lines2, _ = run(capsys, "--engine", "pm4", "--gpu", "gfx942", "--json", str(tmp_path / "ring.bin"))
    assert rc == 0 and [json.loads(x) for x in lines2] == pk
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(blob))
    try:
        rc, lines3, _ = run(capsys, "--engine", "pm4", "--gpu", "90402", "--json", "-")
    finally:
        sys.stdin = old
    assert rc == 0 and [json.loads(x) for x in lines3] == pk


def test_example_sdma_and_aql(capsys):
    rc, lines, _ = run(capsys, "--engine", "sdma", "--gpu", "gfx942", "traces/example.sdma.hex")
    assert rc == 0
    assert [line.split()[1] for line in lines] == [
        "COPY_LINEAR", "CONST_FILL", "WRITE_UNTILED", "ATOMIC", "FENCE", "TRAP", "POLL_REGMEM",
        "TIMESTAMP_GET_GLOBAL", "NOP", "NOP", "NOP"]
    assert "byte_count=0x1000" in lines[0] and "src_data=0xdeadbeef" in lines[1]
    rc, lines, _ = run(capsys, "--engine", "aql", "--gpu", "gfx942", "--json", "traces/example.aql.bin")
    pk = [json.loads(x) for x in lines]
    assert [p["name"] for p in pk] == ["KERNEL_DISPATCH", "BARRIER_AND", "PM4_IB", "BARRIER_VALUE",
                                       "AGENT_DISPATCH", "BARRIER_OR", "INVALID", "INVALID"]
    assert [p["offset"] for p in pk] == list(range(0, 512, 64))
    kd = pk[0]["fields"]
    assert (kd["grid_size_x"], kd["workgroup_size_x"], kd["kernarg_address"]) == (1024, 64, 0x7F3A00001000)
    assert pk[2]["refs"] == [["pm4_ib", 0x7F3A00005000, 16]] and pk[3]["fields"]["mask"] == -1


def test_hex_text_forms(capsys, tmp_path):
    f = tmp_path / "t.txt"
    text = "# comment\n0xFFFF1000, ffff1000  # trailing\n\nC0004200 0\n"
    f.write_text(text + " " * (-len(text) % 4))
    rc, lines, _ = run(capsys, "--engine", "pm4", str(f))
    assert rc == 0 and [line.split()[1] for line in lines] == ["NOP", "NOP", "PFP_SYNC_ME"]
    rc, lines, _ = run(capsys, "--engine", "pm4", "--format", "bin", str(f))   # forced binary: the text bytes
    assert rc == 1 and lines[0].split()[1] == "UNKNOWN" and "type-1" in lines[0]   # "# co" = 0x6f632023


@pytest.mark.parametrize("content,args,message", [
    (b"\x00\x10\xff\xff\x00", [], "5 bytes is not a whole number of dwords"),
    (b"ffff1000\nc0004200 zz\n", [], "line 2: 'zz' is not a hex dword"),
    (b"123456789\n", [], "'123456789' is not a hex dword"),
    (b"\xff\xfe", ["--format", "hex"], "not ASCII"),
    (b"0", ["--gpu", "gfx9999"], "unknown GPU family 'gfx9999'"),
])
def test_bad_input_is_a_clear_error(capsys, tmp_path, content, args, message):
    f = tmp_path / "bad"
    f.write_bytes(content)
    rc, lines, err = run(capsys, "--engine", "pm4", *args, str(f))
    assert rc == 2 and lines == []
    assert err.startswith("kfdtrace decode: error:") and message in err and "Traceback" not in err


def test_missing_file(capsys):
    rc, _, err = run(capsys, "--engine", "sdma", "no/such/file.bin")
    assert rc == 2 and "cannot read no/such/file.bin" in err


def test_decode_garbage_lists_unknown_packets(capsys, tmp_path):
    f = tmp_path / "g.hex"
    f.write_text(f"{pm4.header(0xEE, 0):08x} 0 c0064900 1 2\n")
    rc, lines, err = run(capsys, "--engine", "pm4", "--gpu", "gfx1100", str(f))
    # every packet is listed; exit status 1 and one stderr line say some could not be decoded
    assert rc == 1 and "UNKNOWN" in lines[0] and "unknown PM4 opcode 0xee" in lines[0]
    assert err == f"kfdtrace decode: {f}: 2 of 2 packets not decoded; first at dword 0: UNKNOWN: unknown PM4 opcode 0xee\n"
    assert "TRUNCATED" in lines[1] and "RELEASE_MEM needs 8 dwords, only 3 left" in lines[1]
