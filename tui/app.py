"""`kfdtrace view`: the Textual application.

Layout: a title line, a banner (recovered/damaged trace, load errors), the timeline, then the
views (tabs: packets, ioctls, memory, replay report) beside the detail pane, a status line with a
progress bar while indexing, and the key footer. Styles live in `kfdtrace.tcss`.

State is one reactive attribute, `selection` (a `Target`: packet, record or allocation); every
view follows it through `watch_selection`, and views report user moves with messages
(`RowList.Moved`, `Timeline.Picked`, `Detail.Follow`). Jumps (links, wait→signal, markers,
search) go through `jump()`, which keeps a history for `backspace`.

The trace is indexed in a worker thread (`TraceModel.load`): the first screen appears at once
and fills in; search, filters and the wait/signal jump say so until the index is complete.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Footer, ProgressBar, Static, TabbedContent, TabPane

from kfdtrace.errors import KfdtraceError
from tui.model import ENGINE_ID, Filter, Section, Target, TraceModel, fmt_t, parse_int, parse_time
from tui.screens.help import HelpScreen, key_table
from tui.screens.prompt import FilterScreen, SearchScreen
from tui.widgets.detail import Detail
from tui.widgets.lists import AllocList, IoctlList, PacketList, ReportList, RowList
from tui.widgets.timeline import Timeline


class KfdtraceApp(App):
    CSS_PATH = "kfdtrace.tcss"
    TITLE = "kfdtrace view"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("slash", "search", "Search"),
        Binding("n", "search_next(1)", "Next match"),
        Binding("N", "search_next(-1)", "Prev match", show=False),
        Binding("f", "filter", "Filter"),
        Binding("x", "clear_filter", "Clear filter", show=False),
        Binding("s", "solo_queue", "Only this queue", show=False),
        Binding("w", "sync_jump", "Wait↔signal"),
        Binding("a", "alloc_jump", "Allocation", show=False),
        Binding("m", "marker(1)", "Next marker"),
        Binding("M", "marker(-1)", "Prev marker", show=False),
        Binding("backspace,b", "back", "Back"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in", show=False),
        Binding("minus", "zoom(2)", "Zoom out", show=False),
        Binding("0", "fit", "Zoom to fit", show=False),
        Binding("less_than_sign,comma", "pan(-0.25)", "Pan left", show=False),
        Binding("greater_than_sign,full_stop", "pan(0.25)", "Pan right", show=False),
        Binding("g", "first", "First packet", show=False),
        Binding("G", "last", "Last packet", show=False),
        Binding("t", "focus_view('timeline')", "Timeline", show=False),
        Binding("d", "focus_view('detail')", "Detail", show=False),
        Binding("1", "tab('packets')", "Packets", show=False),
        Binding("2", "tab('ioctls')", "Ioctls", show=False),
        Binding("3", "tab('memory')", "Memory", show=False),
        Binding("4", "tab('report')", "Replay report", show=False),
    ]

    selection: reactive[Target | None] = reactive(None, always_update=True)

    def __init__(self, path, report=None, *, model: TraceModel | None = None):
        super().__init__()
        self.model = model or TraceModel(path, report=report)
        if report is not None:
            self.model.report = report
        self.path = str(path)
        self.history: list[Target] = []
        self.open_error: KfdtraceError | None = None     # the trace could not be opened at all
        self.flt = Filter()
        self.flt_text: dict = {}
        self.search_q: dict | None = None
        self.query_text = ""
        self.status_msg = ""
        self.started = time.perf_counter()
        self.ready_at: float | None = None          # when the index was complete (bench)
        self._last_reindex = 0.0

    # -- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        m = self.model
        yield Static(f" kfdtrace view  {Path(self.path).name}", id="title")
        yield Static("", id="banner")
        yield Timeline(m, id="timeline")
        with Horizontal(id="main"):
            with TabbedContent(id="tabs"):
                with TabPane("Packets", id="packets-tab"):
                    yield PacketList(m, id="packets")
                with TabPane("Ioctls", id="ioctls-tab"):
                    yield IoctlList(m, id="ioctls")
                with TabPane("Memory", id="memory-tab"):
                    yield AllocList(m, id="allocs")
                if m.report is not None:
                    with TabPane(f"Replay report ({len(m.report.items)})", id="report-tab"):
                        yield ReportList(m, id="report")
            yield Detail(id="detail")
        with Horizontal(id="statusbar"):
            yield StatusLine("opening…", id="status")
            yield ProgressBar(total=1, show_eta=False, id="progress")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#packets", PacketList).focus()
        self._load()

    # -- loading -------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        m = self.model
        try:
            m.open(progress=lambda d, t: self.call_from_thread(self._progress, "recovering", d, t))
        except KfdtraceError as e:
            self.open_error = e
            self.call_from_thread(self._failed, str(e))
            return
        self.call_from_thread(self._opened)
        # longer GIL slices while indexing: the UI thread stays live (it only repaints) and the
        # index is not slowed down by a thread switch every 5 ms
        old = sys.getswitchinterval()
        sys.setswitchinterval(0.02)
        try:
            m.load(progress=lambda d, t: self.call_from_thread(self._progress, "indexing", d, t))
        finally:
            sys.setswitchinterval(old)
        self.call_from_thread(self._loaded)

    def _progress(self, what: str, done: int, total: int) -> None:
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(1, total), progress=done)
        self._set_status(f"{what}: {done:,} of {total:,} {'bytes' if what == 'recovering' else 'records'}")
        if what == "indexing":
            self.query_one("#packets", PacketList).refresh_count()
            now = time.perf_counter()
            if now - self._last_reindex > 0.3:
                self._last_reindex = now
                self.query_one(Timeline).reindex()
                self._fit_timeline()

    def _failed(self, err: str) -> None:
        self._banner([f"cannot open the trace: {err}"], error=True)
        self.query_one("#progress", ProgressBar).display = False
        self._set_status("no trace")

    def _opened(self) -> None:
        m, r = self.model, self.model.reader
        gpus = ", ".join(str(g.get("gfx") or g.get("name") or g.get("gpu_id")) for g in m._gpus.values())
        self.query_one("#title", Static).update(
            f" kfdtrace view  {Path(self.path).name}  ·  {gpus or 'no GPU info'}  ·  {len(r):,} records  ·  "
            f"{r.status}")
        self._banner(self._warnings())
        self.query_one(Timeline).reindex()
        self._fit_timeline()

    def _warnings(self) -> list[str]:
        m, r = self.model, self.model.reader
        out = []
        if r.recovered:
            up = r.recovered_upto or {}
            out.append(f"RECOVERED TRACE: no usable index; showing the {len(r):,} records that could be read "
                       f"(up to byte {up.get('offset')} of {r.size}, last record {up.get('record')}); "
                       f"scan stopped: {up.get('reason')}")
        out += [w for w in r.warnings if not (r.recovered and w.startswith("no usable index"))]
        if m.load_error:
            out.append(f"indexing stopped early: {m.load_error}")
        return out

    def _banner(self, lines: list[str], error: bool = False) -> None:
        b = self.query_one("#banner", Static)
        b.update("\n".join(f"⚠ {x}" for x in lines))
        b.set_class(bool(lines), "shown")
        b.set_class(error, "error")

    def _loaded(self) -> None:
        m = self.model
        self.ready_at = time.perf_counter()
        if m.report is not None:
            m.report.resolve(m)
        self.query_one("#progress", ProgressBar).display = False
        self.query_one("#packets", PacketList).set_rows(m.rows(self.flt))
        self.query_one("#ioctls", IoctlList).set_count(len(m.ioctls))
        self.query_one("#allocs", AllocList).set_count(len(m.allocs))
        if m.report is not None:
            self.query_one("#report", ReportList).set_count(len(m.report.items))
        self._banner(self._warnings(), error=bool(m.load_error))
        self.query_one(Timeline).reindex()
        self._fit_timeline()
        if self.selection is None:
            first = None
            if m.report is not None:
                first = next((ReportList.target(self.query_one("#report", ReportList), j)
                              for j in range(len(m.report.items))), None)
            if first is None and m.n_packets:
                first = Target("packet", 0)
            if first is not None:
                self.selection = first
        self._set_status()

    def _fit_timeline(self) -> None:
        tl = self.query_one(Timeline)
        tl.styles.height = min(len(self.model.lanes), 12) + 2    # + axis line, + border

    # -- status -------------------------------------------------------------------------------------
    def _set_status(self, extra: str | None = None) -> None:
        m = self.model
        parts = [f"{m.n_packets:,} packets in {len(m.subs):,} submissions"]
        if not m.loaded:
            parts.append(extra or "indexing…")
        pl = self.query_one("#packets", PacketList)
        if self.flt.active:
            parts.append(f"filter: {self.flt.describe()} ({pl.count:,} shown)")
        if self.query_text:
            parts.append(f"search: {self.query_text}")
        if self.status_msg:
            parts.append(self.status_msg)
        self.query_one("#status", StatusLine).show("  ·  ".join(parts))

    def say(self, text: str) -> None:
        self.status_msg = text
        self._set_status()

    # -- selection ----------------------------------------------------------------------------------
    def watch_selection(self, tgt: Target | None) -> None:
        if tgt is None:
            return
        m = self.model
        self.query_one(Timeline).select(tgt)
        for lst, kind in (("#packets", "packet"), ("#ioctls", "record"), ("#allocs", "alloc")):
            w = self.query_one(lst, RowList)
            if w.active != (tgt.kind == kind):
                w.active = tgt.kind == kind
                w.refresh()
        det = self.query_one(Detail)
        if tgt.kind == "packet":
            pl = self.query_one("#packets", PacketList)
            row, exact = pl.row_of(tgt.index)
            pl.move_to(row, notify=False, center=True)
            if not exact:
                self.say(f"packet {tgt.index} is hidden by the filter (x clears it)")
            det.show(self._detail(m.packet_detail, tgt))
        elif tgt.kind == "record":
            il = self.query_one("#ioctls", IoctlList)
            r = il.row_of_record(tgt.index)
            if r is not None:
                il.move_to(r, notify=False, center=True)
            det.show(self._detail(m.record_detail, tgt))
        elif tgt.kind == "alloc":
            self.query_one("#allocs", AllocList).move_to(tgt.index, notify=False, center=True)
            det.show(self._detail(m.alloc_detail, tgt))

    @staticmethod
    def _detail(build, tgt: Target) -> list:
        """The detail sections of `tgt`; a record the decoders cannot make sense of (a damaged or
        foreign trace) is shown as what failed, not as a crash of the whole viewer."""
        try:
            return build(tgt.index)
        except Exception as e:
            sec = Section(f"{tgt}: cannot be shown")
            sec.add("error", f"{type(e).__name__}: {e}", style="error")
            return [sec]

    def jump(self, tgt: Target | None, message: str = "") -> None:
        """Select `tgt` as a jump (remembered for `back`) and show the view that holds it."""
        if message:
            self.say(message)
        if tgt is None:
            self.bell()
            return
        if self.selection is not None and self.selection != tgt:
            self.history.append(self.selection)
        self._show_tab_for(tgt)
        self.selection = tgt

    def _show_tab_for(self, tgt: Target) -> None:
        tabs = self.query_one(TabbedContent)
        if tgt.kind == "packet":
            tabs.active = "packets-tab"
        elif tgt.kind == "alloc":
            tabs.active = "memory-tab"
        elif tgt.kind == "record" and self.query_one("#ioctls", IoctlList).row_of_record(tgt.index) is not None:
            tabs.active = "ioctls-tab"

    def on_row_list_moved(self, msg: RowList.Moved) -> None:
        lst, m = msg.lst, self.model
        if isinstance(lst, PacketList):
            tgt = Target("packet", lst.packet_at(msg.row))
        elif isinstance(lst, IoctlList):
            tgt = Target("record", m.ioctls[msg.row][0])
        elif isinstance(lst, AllocList):
            tgt = Target("alloc", msg.row)
        elif isinstance(lst, ReportList):
            tgt = lst.target(msg.row)
            it = m.report.items[msg.row]
            self.say(f"{it.kind}: {it.title}")
            if tgt is None:
                return
            if msg.activate:             # enter / double click: go there
                self.jump(tgt)
                self.query_one("#packets" if tgt.kind == "packet" else "#detail").focus()
            else:                        # moving through the report: show it, stay in the list
                self.selection = tgt
            return
        else:
            return
        self.selection = tgt
        if msg.activate:
            self.query_one(Detail).focus()

    def on_timeline_picked(self, msg: Timeline.Picked) -> None:
        self.selection = msg.target
        if msg.activate:
            if msg.target.kind == "packet":
                self.query_one(TabbedContent).active = "packets-tab"
                self.query_one("#packets", PacketList).focus()
            else:
                self.query_one(Detail).focus()

    def on_detail_follow(self, msg: Detail.Follow) -> None:
        self.jump(msg.target)

    # -- actions ------------------------------------------------------------------------------------
    def action_help(self) -> None:
        groups = [("global", self.BINDINGS), ("timeline (t)", Timeline.BINDINGS), ("lists", RowList.BINDINGS),
                  ("detail pane (d)", Detail.BINDINGS)]
        self.push_screen(HelpScreen(key_table(groups, HELP)))

    def _need_index(self) -> bool:
        if not self.model.loaded:
            self.say("still indexing the trace — try again in a moment")
            self.bell()
            return False
        return True

    def action_search(self) -> None:
        if self._need_index():
            self.push_screen(SearchScreen(self.query_text), self._start_search)

    def _start_search(self, text: str | None) -> None:
        if not text:
            return
        try:
            q = self.model.parse_query(text)
        except (ValueError, KfdtraceError) as e:
            self.say(f"search: {e}")
            self.bell()
            return
        self.search_q, self.query_text = q, text
        pl = self.query_one("#packets", PacketList)
        mask = self.model.search_mask(q)
        pl.matches = _MaskSet(mask) if mask is not None else set()
        total = int(mask.sum()) if mask is not None else None
        self.say(f"{total:,} matches" if total is not None else "searching…")
        self._search(q, self._current_packet(-1), False, total)

    def _current_packet(self, default: int = 0) -> int:
        s = self.selection
        if s is not None and s.kind == "packet":
            return s.index
        if s is not None and s.kind == "record" and self.model.loaded:
            t = self.model.time_of(s)
            if t is not None and self.model.subs:
                return self.model.subs[self.model.sub_at_time(t)].first - 1
        return default

    def action_search_next(self, d: int) -> None:
        if self.search_q is None:
            self.action_search()
            return
        self._search(self.search_q, self._current_packet(-1 if d > 0 else self.model.n_packets), d < 0, None)

    @work(thread=True, exclusive=True, group="search")
    def _search(self, q: dict, start: int, backward: bool, total: int | None) -> None:
        from textual.worker import get_current_worker
        worker = get_current_worker()
        pl = self.query_one("#packets", PacketList)
        hit = self.model.search(q, start, pl.rows, backward, cancel=lambda: worker.is_cancelled)
        if worker.is_cancelled:
            return
        self.call_from_thread(self._search_done, q, hit, total)

    def _search_done(self, q: dict, hit: int | None, total: int | None) -> None:
        if hit is None:
            self.say(f"search: no {'earlier' if False else 'further'} match for {self.query_text!r}")
            self.bell()
            return
        if isinstance(self.query_one("#packets", PacketList).matches, set):
            self.query_one("#packets", PacketList).matches = {hit}
        where = f"match: packet {hit}" + (f" ({total:,} matches)" if total else "")
        self.jump(Target("packet", hit), where)

    def action_filter(self) -> None:
        if not self._need_index():
            return
        m = self.model
        qs = "  ".join(f"{q.qid}={q.label}" for q in m.queues.values())
        kinds = ", ".join(f"{k} {v:,}" for k, v in m.kinds().items())
        choices = f"queues: {qs}\nengines: {', '.join(sorted({q.engine for q in m.queues.values()}))}\n" \
                  f"kinds: {kinds}\ntime: {fmt_t(m.t_min)} – {fmt_t(m.t_max)}"
        self.push_screen(FilterScreen(self.flt_text, choices), self._apply_filter_text)

    def _apply_filter_text(self, values: dict | None) -> None:
        if values is None:
            return
        try:
            flt = parse_filter(values)
        except ValueError as e:
            self.say(f"filter: {e}")
            self.bell()
            return
        self.flt_text = values
        self.set_filter(flt)

    def set_filter(self, flt: Filter) -> None:
        self.flt = flt
        pl = self.query_one("#packets", PacketList)
        pl.set_rows(self.model.rows(flt))
        self.say(f"filter: {flt.describe()}" if flt.active else "filter cleared")
        if pl.count and self.selection is not None and self.selection.kind == "packet":
            row, exact = pl.row_of(self.selection.index)
            if not exact:
                self.selection = Target("packet", pl.packet_at(row))

    def action_clear_filter(self) -> None:
        self.flt_text = {}
        self.set_filter(Filter())

    def action_solo_queue(self) -> None:
        if not self._need_index():
            return
        s = self.selection
        if self.flt.queues is not None:
            self.action_clear_filter()
            return
        if s is None or s.kind != "packet":
            self.say("select a packet first")
            return
        qid = self.model.subs[self.model.sub_of(s.index)].qid
        self.flt_text = {"queues": str(qid)}
        self.set_filter(Filter(queues=frozenset({qid})))

    def action_sync_jump(self) -> None:
        if self.selection is None or not self._need_index():
            return
        self.say("looking for the matching wait/signal…")
        self._sync(self.selection)

    @work(thread=True, exclusive=True, group="sync")
    def _sync(self, tgt: Target) -> None:
        res, msg = self.model.jump_sync(tgt)
        self.call_from_thread(self.jump, res, msg)

    def action_alloc_jump(self) -> None:
        links = [t for t in self.query_one(Detail).links() if t.kind == "alloc"]
        if not links:
            self.say("no address of the selection falls in a recorded allocation")
            self.bell()
            return
        self.jump(links[0], "allocation of the selection's first address")

    def action_marker(self, d: int) -> None:
        m = self.model
        s = self.selection
        t = m.time_of(s) if s is not None and s.kind != "alloc" else None
        n = s.index if s is not None and s.kind == "record" else \
            (m.subs[m.sub_of(s.index)].n if s is not None and s.kind == "packet" else -1)
        mk = m.marker_after(t if t is not None else -1, n, backward=d < 0)
        if mk is None:
            self.say("no further marker" if d > 0 else "no earlier marker")
            self.bell()
            return
        self.jump(Target("record", mk[0]), f"marker {mk[2]!r} at {fmt_t(mk[1])}")

    def action_back(self) -> None:
        if not self.history:
            self.say("nothing to go back to")
            self.bell()
            return
        tgt = self.history.pop()
        self._show_tab_for(tgt)
        self.selection = tgt

    def action_zoom(self, f: float) -> None:
        self.query_one(Timeline).zoom(f)

    def action_pan(self, f: float) -> None:
        self.query_one(Timeline).pan(f)

    def action_fit(self) -> None:
        self.query_one(Timeline).fit_all()

    def action_first(self) -> None:
        pl = self.query_one("#packets", PacketList)
        if pl.count:
            self.jump(Target("packet", pl.packet_at(0)))

    def action_last(self) -> None:
        pl = self.query_one("#packets", PacketList)
        if pl.count:
            self.jump(Target("packet", pl.packet_at(pl.count - 1)))

    def action_focus_view(self, which: str) -> None:
        self.query_one(f"#{which}").focus()

    def action_tab(self, name: str) -> None:
        tabs = self.query_one(TabbedContent)
        ids = {"packets": ("packets-tab", "#packets"), "ioctls": ("ioctls-tab", "#ioctls"),
               "memory": ("memory-tab", "#allocs"), "report": ("report-tab", "#report")}
        tab, widget = ids[name]
        if name == "report" and self.model.report is None:
            self.say("no replay report (kfdtrace view FILE --report replay.json)")
            return
        tabs.active = tab
        self.query_one(widget).focus()


#: what each action does, for the help screen (the footer shows the short binding descriptions)
HELP = {
    "help": "this help", "quit": "quit",
    "search": "search packets: name (RELEASE_MEM), register (COMPUTE_PGM_LO), value or address "
              "(0x7f3a00600008); prefixes name: reg: addr: value:",
    "search_next(1)": "next search match", "search_next(-1)": "previous search match",
    "filter": "filter the packet list by queue, engine, packet kind, time range",
    "clear_filter": "clear the filter", "solo_queue": "show only the selected packet's queue (again: all)",
    "sync_jump": "from a wait to the signal that satisfies it; from a signal to the wait it releases",
    "alloc_jump": "jump to the allocation the selection's first address falls in",
    "marker(1)": "next marker", "marker(-1)": "previous marker", "back": "back to where the last jump came from",
    "zoom(0.5)": "zoom the timeline in", "zoom(2)": "zoom the timeline out", "fit": "fit the whole trace",
    "pan(-0.25)": "pan the timeline left", "pan(0.25)": "pan the timeline right",
    "first": "first packet", "last": "last packet", "focus_view('timeline')": "focus the timeline",
    "focus_view('detail')": "focus the detail pane", "tab('packets')": "packet list", "tab('ioctls')": "ioctl list",
    "tab('memory')": "allocations (memory view)", "tab('report')": "replay report (with --report)",
    "step(-1)": "previous item in the lane", "step(1)": "next item in the lane", "lane(-1)": "lane above",
    "lane(1)": "lane below", "open": "show the item (packets of a submission)", "follow": "follow the link under the cursor",
    "activate": "open the row (focus its detail)",
}


class StatusLine(Widget):
    """One line of status text. Updating it repaints the line only (a Static would re-lay out
    the screen on every cursor move)."""

    def __init__(self, text: str = "", **kw):
        super().__init__(**kw)
        self.text = text

    def show(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.refresh()

    def render(self) -> str:
        return self.text


class _MaskSet:
    """`i in matches` over a boolean mask (a search hitting 200,000 packets is not a 200,000-item set)."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask

    def __contains__(self, i) -> bool:
        return 0 <= i < len(self.mask) and bool(self.mask[i])


def parse_filter(values: dict) -> Filter:
    """The filter form's text fields → Filter (ValueError says which field is wrong)."""
    def items(key):
        text = values.get(key, "").strip()
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

    qs = items("queues")
    queues = None
    if qs is not None:
        ids = [parse_int(x.lstrip("q")) for x in qs]
        if any(i is None for i in ids):
            raise ValueError(f"queues: {values['queues']!r} is not a list of queue ids")
        queues = frozenset(ids)
    engines = items("engines")
    if engines is not None:
        bad = [e for e in engines if e.lower() not in ENGINE_ID]
        if bad:
            raise ValueError(f"engines: unknown {', '.join(bad)} (pm4, sdma, aql)")
        engines = frozenset(e.lower() for e in engines)
    kinds = items("kinds")
    t0 = t1 = None
    tr = values.get("time", "").strip()
    if tr:
        lo, sep, hi = tr.partition("-")
        if not sep:
            raise ValueError("time: give a range, e.g. 0.5ms-2ms, 1ms- or -3ms")
        t0 = parse_time(lo) if lo.strip() else None
        t1 = parse_time(hi) if hi.strip() else None
    return Filter(queues, engines, tuple(k.upper() for k in kinds) if kinds else None, t0, t1)


def run(path, report_path=None) -> int:
    """Open the TUI on a trace (the `kfdtrace view` command)."""
    report = None
    if report_path is not None:
        from tui.report import Report
        report = Report.load(report_path)
    app = KfdtraceApp(path, report)
    app.run()
    if app.open_error is not None:      # shown in the banner; said again on the terminal, exit 2
        raise app.open_error
    return 0
