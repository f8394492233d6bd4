"""The TUI driven headless through Textual's pilot: navigation, timeline, search, filters,
wait→signal jumps, allocation and marker jumps, the replay-report overlay, the recovered-trace
banner, help, mouse, ioctls, and the `view` command's errors. Assertions read what the widgets show."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from textual.widgets import Input, TabbedContent

from kfdtrace.cli import main as cli_main
from kfdtrace.packets import pm4
from kfdtrace.trace import TraceWriter
from tui.app import KfdtraceApp
from tui.demo import HEADER, write_demo
from tui.model import Target
from tui.report import Report
from tui.screens.help import HelpScreen
from tui.screens.prompt import FilterScreen

SIZE = (160, 48)


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("tuiapp") / "demo.trace"
    write_demo(p, 6)
    return p


def drive(app: KfdtraceApp, script, size=SIZE) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await script(app, pilot)
    asyncio.run(main())


async def settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def keys(app, pilot, *ks) -> None:
    for k in ks:
        await pilot.press(k)
        await app.workers.wait_for_complete()        # search and wait/signal jumps run in workers


def detail_title(app) -> str:
    return app.query_one("#detail").text().splitlines()[0]


def row_text(app, lst: str, y: int) -> str:
    return app.query_one(lst).render_line(y).text


def status(app) -> str:
    return str(app.query_one("#status").render())


def test_first_screen_and_keyboard_navigation(demo_path):
    async def script(app, pilot):
        m = app.model
        assert "gfx1100" in str(app.query_one("#title").render())
        assert "140 packets in 16 submissions" in status(app)
        assert app.selection == Target("packet", 0) and detail_title(app) == "COPY_LINEAR  (packet 0)"
        assert "q2 sdma" in row_text(app, "#packets", 1) and "COPY_LINEAR" in row_text(app, "#packets", 1)
        assert "time" in row_text(app, "#packets", 0) and "fields" in row_text(app, "#packets", 0)
        await keys(app, pilot, *["down"] * 6)
        assert app.selection == Target("packet", 6) and detail_title(app) == "WAIT_REG_MEM  (packet 6)"
        assert "poll_addr" in app.query_one("#detail").text()
        await keys(app, pilot, "G")
        assert app.selection == Target("packet", 139)
        assert app.query_one("#packets").cursor == 139
        await keys(app, pilot, "g", "pagedown")
        assert app.selection.index == app.query_one("#packets").cursor > 20
        # timeline: the selected submission is marked in its lane; left/right walk the lane
        await keys(app, pilot, "g", "t")
        tl = app.query_one("#timeline")
        assert tl.has_focus and tl.lane == 2 and "◆" in tl.render_line(3).text
        await keys(app, pilot, "right")
        assert app.selection == Target("packet", m.subs[2].first)          # the next SDMA submission
        await keys(app, pilot, "down")
        assert tl.lane == 3 and m.subs[m.sub_of(app.selection.index)].qid == 3
        await keys(app, pilot, "up", "up", "up")
        assert tl.lane == 0 and app.selection.kind == "record"
        assert m.record(app.selection.index).kind in ("marker", "wait", "ioctl", "event_wait", "memwrite")
        w = tl.v1 - tl.v0
        await keys(app, pilot, "plus")
        assert tl.v1 - tl.v0 == w // 2
        await keys(app, pilot, "minus", "minus", "0")
        assert tl.v0 <= m.t_min and tl.v1 >= m.t_max
        await keys(app, pilot, "less_than_sign")
        assert tl.v1 < m.t_max
        # mouse: a click selects a packet row, and a submission on the timeline
        await keys(app, pilot, "0")
        await pilot.click("#packets", offset=(20, 6))
        assert app.selection == Target("packet", int(app.query_one("#packets").scroll_offset.y) + 5)
        s = next(j for j, sub in enumerate(m.subs) if sub.qid == 3)
        await pilot.click("#timeline", offset=(12 + tl.cell_of(m.subs[s].t), 4))
        assert app.selection == Target("packet", m.subs[s].first)
    drive(KfdtraceApp(demo_path), script)


def test_search_wait_signal_allocation_and_marker_jumps(demo_path):
    async def script(app, pilot):
        m = app.model
        dispatches = [i for i in range(m.n_packets) if m.packet(i).name == "DISPATCH_DIRECT"]
        await keys(app, pilot, "slash", "D", "I")
        assert app.screen.query_one(Input).value == "DI"
        app.screen.query_one(Input).value = "DISPATCH_DIRECT"
        await keys(app, pilot, "enter")
        assert app.selection == Target("packet", dispatches[0])
        assert "7 matches" in status(app)
        await keys(app, pilot, "n", "n")
        assert app.selection == Target("packet", dispatches[2])
        await keys(app, pilot, "N")
        assert app.selection == Target("packet", dispatches[1])
        assert row_text(app, "#packets", 1 + dispatches[1] - int(app.query_one("#packets").scroll_offset.y))[0] == "»"
        await keys(app, pilot, "slash")
        app.screen.query_one(Input).value = "0x7f3a00600048"        # the `computed` timeline value
        await keys(app, pilot, "enter")
        p = m.packet(app.selection.index)
        assert app.selection.index > dispatches[1] and 0x7F3A00600048 in p.fields.values()
        # wait -> signal -> wait, and back through the history
        app.jump(Target("packet", 6))
        assert m.packet(6).name == "WAIT_REG_MEM"
        await keys(app, pilot, "w")
        p = m.packet(app.selection.index)
        assert (p.name, p.fields["data"]) == ("FENCE", 1) and "satisfying >= 0x1" in status(app)
        fence = app.selection
        await keys(app, pilot, "w")                         # from the signal: the wait it releases
        assert app.selection == Target("packet", 6)
        await keys(app, pilot, "backspace")
        assert app.selection == fence
        await keys(app, pilot, "backspace")
        assert app.selection == Target("packet", 6)
        hung = max(i for i in range(m.n_packets) if m.packet(i).name == "WAIT_REG_MEM")
        app.jump(Target("packet", hung))
        await keys(app, pilot, "w")
        assert app.selection == Target("packet", hung) and "would hang" in status(app)
        # allocation, marker and detail-link jumps
        d = next(i for i in range(m.n_packets) if m.packet(i).name == "DISPATCH_DIRECT")
        app.jump(Target("packet", d))
        await settle(app, pilot)
        text = app.query_one("#detail").text()
        assert "saxpy" in text and "alpha" in text and "s_endpgm" in text
        await keys(app, pilot, "a")
        assert app.selection.kind == "alloc" and app.query_one(TabbedContent).active == "memory-tab"
        a = m.allocs[app.selection.index]
        assert a.va == m.dispatch_info(d)["kernarg"] and detail_title(app) == f"allocation {a.handle:#x}"
        assert app.query_one("#allocs").cursor == a.index and "CPU writes (9)" in app.query_one("#detail").text()
        await keys(app, pilot, "backspace")
        assert app.selection == Target("packet", d)
        # markers
        app.jump(Target("packet", 0))
        await keys(app, pilot, "m")
        t0 = m.subs[0].t
        nxt = next(mk for mk in m.markers if mk[1] > t0)
        assert app.selection == Target("record", nxt[0]) and nxt[2] in status(app)
        await keys(app, pilot, "m", "M")
        assert app.selection == Target("record", nxt[0])
        # follow the detail pane's first link (the submission record of a packet) with enter
        app.jump(Target("packet", 3))
        await keys(app, pilot, "d", "enter")
        assert app.selection == Target("record", m.subs[0].n) and detail_title(app).startswith("submit")
    drive(KfdtraceApp(demo_path), script)


def test_filter_form_and_solo_queue(demo_path):
    async def script(app, pilot):
        m = app.model
        pl = app.query_one("#packets")
        n_sdma = sum(s.count for s in m.subs if s.qid == 2)
        await keys(app, pilot, "f")
        assert isinstance(app.screen, FilterScreen)
        assert "FENCE 18" in str(app.screen.query_one("#filter-choices").render())
        app.screen.query_one("#filter-engines", Input).value = "sdma"
        app.screen.query_one("#filter-kinds", Input).value = "FENCE,TRAP"
        await keys(app, pilot, "enter")
        assert pl.count == 24 < n_sdma
        assert all("q2 sdma" in row_text(app, "#packets", y) for y in range(1, 25))
        assert "filter: engine sdma; kind FENCE,TRAP (24 shown)" in status(app)
        assert m.packet(app.selection.index).name in ("FENCE", "TRAP")
        await keys(app, pilot, "x")
        assert pl.count == 140
        aql_first = next(s.first for s in m.subs if s.qid == 3)
        app.jump(Target("packet", aql_first))
        await keys(app, pilot, "s")
        assert pl.count == 9 and all("q3 aql" in row_text(app, "#packets", y) for y in range(1, 10))
        await keys(app, pilot, "s")
        assert pl.count == 140
        await keys(app, pilot, "f")
        app.screen.query_one("#filter-engines", Input).value = "gpu"
        await keys(app, pilot, "enter")
        assert pl.count == 140 and "unknown gpu" in status(app)
        await keys(app, pilot, "f")
        app.screen.query_one("#filter-time", Input).value = f"-{m.subs[1].t / 1e6}ms"
        await keys(app, pilot, "enter")
        assert pl.count == m.subs[0].count + m.subs[1].count
    drive(KfdtraceApp(demo_path), script)


def test_replay_report_overlay(demo_path):
    async def script(app, pilot):
        m = app.model
        rep = m.report
        assert [it.kind for it in rep.items] == ["divergence", "hang", "fault"]
        hang_sub = max(j for j, s in enumerate(m.subs) if s.qid == 1)
        assert app.selection == Target("packet", m.subs[3].first)             # the first item
        assert "replay report" in app.query_one("#detail").text()
        assert "checksum differs" in app.query_one("#detail").text()
        assert "Replay report (3)" in str(app.query_one(TabbedContent).get_tab("report-tab").label)
        tl = app.query_one("#timeline")
        assert "✖" in tl.render_line(2).text and "✖" in tl.render_line(4).text     # q1 and q3 lanes
        await keys(app, pilot, "4")
        assert app.query_one("#report").has_focus and "divergence" in row_text(app, "#report", 1)
        await keys(app, pilot, "down")
        assert app.selection == Target("packet", m.subs[hang_sub].first)
        assert app.query_one(TabbedContent).active == "report-tab"            # still in the report
        await keys(app, pilot, "enter")
        assert app.query_one(TabbedContent).active == "packets-tab" and app.query_one("#packets").has_focus
        pl = app.query_one("#packets")
        y = 1 + pl.cursor - int(pl.scroll_offset.y)
        assert row_text(app, "#packets", y).startswith("!")
    rep = Report.from_json({"divergences": [{"submission": 3, "message": "checksum differs"}],
                            "hangs": [{"queue": 1, "message": "WAIT_REG_MEM never satisfied"}],
                            "faults": [{"submission": 4, "packet": 1, "fault": "drop_signal"}]})
    drive(KfdtraceApp(demo_path, rep), script)


def test_recovered_trace_shows_a_banner(demo_path, tmp_path):
    cut = tmp_path / "cut.trace"
    data = demo_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    async def script(app, pilot):
        banner = app.query_one("#banner")
        assert banner.has_class("shown")
        text = str(banner.render())
        assert text.startswith("⚠ RECOVERED TRACE") and "scan stopped" in text
        assert app.model.reader.recovered and app.query_one("#packets").count == app.model.n_packets
    drive(KfdtraceApp(cut), script)


def test_unreadable_trace_says_so(tmp_path):
    bad = tmp_path / "bad.trace"
    bad.write_bytes(b"KFDTRACE" + bytes(100))

    async def script(app, pilot):
        assert "cannot open the trace" in str(app.query_one("#banner").render())
        assert app.query_one("#banner").has_class("error")
    drive(KfdtraceApp(bad), script)


def test_help_lists_every_key_and_ioctl_view(demo_path):
    async def script(app, pilot):
        m = app.model
        await keys(app, pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        for b in app.BINDINGS:
            assert b.description and (app.screen.rows and any(b.key.split(",")[0][:1] in k for _, k, _ in app.screen.rows))
        assert "from a wait to the signal that satisfies it" in text and "backspace b" in text
        assert "previous item in the lane" in text and "follow the link" in text and "mouse" in text
        await keys(app, pilot, "escape")
        assert not isinstance(app.screen, HelpScreen)
        # the ioctl view
        await keys(app, pilot, "2")
        il = app.query_one("#ioctls")
        assert il.has_focus and il.count == len(m.ioctls) == 48
        assert "GET_VERSION" in row_text(app, "#ioctls", 1)
        await keys(app, pilot, "down", "down")
        n = m.ioctls[2][0]
        assert app.selection == Target("record", n) and m.record(n)["name"] == "AMDKFD_IOC_ALLOC_MEMORY_OF_GPU"
        text = app.query_one("#detail").text()
        assert "va_addr" in text and "0x7f3a00000000" in text and "GTT|WRITABLE" in text
        assert "handle" in text and "→ 0x5a1d00000001" in text                  # an out field, changed
    drive(KfdtraceApp(demo_path), script)


def test_million_row_list_renders_only_what_is_visible(tmp_path):
    """A 60,000-packet trace: the list knows every row but decodes only the ones drawn."""
    p = tmp_path / "wide.trace"
    one = pm4.build("RELEASE_MEM", "gfx1100", event_type=0x14, event_index=5, data_sel=1, addr=0x1000, data=1)
    ring = np.tile(np.array(one, np.uint32), 2000)
    with TraceWriter(p, dict(HEADER), flush_interval=None) as w:
        w.write("queue_create", queue_id=1, gpu_id=0x5A1D, type="compute", ring_base=0, ring_size=1 << 20,
                wptr_addr=0, rptr_addr=0, doorbell_offset=0, engine="pm4")
        for k in range(30):
            ring[5::8] = k
            w.write("submit", queue_id=1, engine="pm4", wptr_before=k * 16000, wptr_after=(k + 1) * 16000,
                    dwords=w.blob(ring.tobytes()), ibs=[])

    async def script(app, pilot):
        assert app.query_one("#packets").count == 60_000
        await keys(app, pilot, "G")
        assert app.selection == Target("packet", 59_999)
        assert app.model.packet(59_999).fields["data"] == 29
        assert len(app.model._packets) < 200
    drive(KfdtraceApp(p), script)


def test_view_command_errors(tmp_path, capsys):
    assert cli_main(["view", str(tmp_path / "missing.trace")]) == 2
    assert "cannot open" in capsys.readouterr().err
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"hello world, not a trace")
    assert cli_main(["view", str(junk)]) == 2
    assert "not a kfdtrace trace" in capsys.readouterr().err
