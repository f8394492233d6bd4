"""SVG snapshots of the TUI's main screens (pytest-textual-snapshot; `--snapshot-update` rewrites
them after a deliberate change — look at the new SVGs before committing them)."""
from __future__ import annotations

import pytest

from tui.app import KfdtraceApp
from tui.demo import write_demo
from tui.model import Target
from tui.report import Report

SIZE = (160, 48)


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("tuisnap") / "demo.trace"
    write_demo(p, 6)
    return p


async def loaded(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_main_screen(snap_compare, demo_path):
    """Timeline with four lanes, the packet list, the first packet's fields."""
    assert snap_compare(KfdtraceApp(demo_path), terminal_size=SIZE, run_before=loaded)


def test_dispatch_detail(snap_compare, demo_path):
    """A PM4 dispatch: registers resolved to saxpy, its arguments and disassembly."""
    async def run_before(pilot):
        await loaded(pilot)
        app = pilot.app
        app.jump(Target("packet", next(i for i in range(app.model.n_packets)
                                       if app.model.packet(i).name == "DISPATCH_DIRECT")))
        await pilot.press("t")           # focus the timeline: its lane and item are highlighted
        await pilot.pause()
    assert snap_compare(KfdtraceApp(demo_path), terminal_size=SIZE, run_before=run_before)


def test_replay_report_overlay(snap_compare, demo_path):
    """Report items marked on the timeline and the packet rows; the report tab."""
    rep = Report.from_json({"status": "diverged",
                            "divergences": [{"submission": 3, "message": "checksum of y differs"}],
                            "hangs": [{"queue": 1, "message": "WAIT_REG_MEM never satisfied"}],
                            "faults": [{"submission": 4, "packet": 1, "fault": "drop_signal"}]})

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("4", "down")
        await pilot.pause()
    assert snap_compare(KfdtraceApp(demo_path, rep), terminal_size=SIZE, run_before=run_before)


def test_memory_view(snap_compare, demo_path):
    """Allocations over time, and one allocation's CPU writes and the submissions touching it."""
    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("3", "down", "down", "down", "down", "down")
        await pilot.pause()
    assert snap_compare(KfdtraceApp(demo_path), terminal_size=SIZE, run_before=run_before)
