"""Virtual lists (Textual's line API): only the visible rows are rendered, so a list of a million
packets costs what a screenful does. `RowList` draws a fixed header line, keeps a cursor, scrolls
to it and posts `RowList.Moved` when the user moves it; subclasses say how to draw one row.

`PacketList` shows packets (optionally through a filter's row array), `IoctlList` the ioctl
records, `AllocList` the allocations over time, `ReportList` the replay report's items.
"""
from __future__ import annotations

import re

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.model import ENGINE_NAME, Target, TraceModel, alloc_flags_short, fmt_size, fmt_t


def fit(text: str, width: int) -> str:
    """`text` cut or padded to exactly `width` cells (an ellipsis marks a cut)."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


class RowList(ScrollView, can_focus=True):
    """A scrolling list of `count` rows under a header line, with a cursor."""

    COMPONENT_CLASSES = {"rowlist--header", "rowlist--cursor", "rowlist--cursor-blur", "rowlist--dim",
                         "rowlist--flag", "rowlist--match", "rowlist--pm4", "rowlist--sdma", "rowlist--aql",
                         "rowlist--error", "rowlist--bar", "rowlist--name"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First row", show=False),
        Binding("end", "edge(1)", "Last row", show=False),
        Binding("enter", "activate", "Open", show=False),
    ]

    class Moved(Message):
        """The user moved the cursor to `row` (or activated it with enter/click)."""

        def __init__(self, lst: "RowList", row: int, activate: bool = False):
            super().__init__()
            self.lst, self.row, self.activate = lst, row, activate

        @property
        def control(self):
            return self.lst

    def __init__(self, model: TraceModel, **kw):
        super().__init__(**kw)
        self.model = model
        self.count = 0
        self.cursor = 0
        self.active = True       # the cursor row is the app's selection (else drawn dimmed)
        self._styles: dict[str, Style] = {}      # resolved component styles, until the CSS changes

    # -- contents ------------------------------------------------------------------------------------
    def set_count(self, count: int) -> None:
        if count != self.count:
            self.count = count
            self.cursor = min(self.cursor, max(0, count - 1))
            self.virtual_size = Size(self.scrollable_content_region.width, count + 1)
        self.refresh()

    def header(self) -> str:
        return ""

    def render_row(self, row: int, width: int) -> list[tuple[str, Style | None]]:
        raise NotImplementedError

    def row_style(self, row: int) -> Style | None:
        return None

    def style(self, name: str) -> Style:
        st = self._styles.get(name)
        if st is None:
            st = self._styles[name] = self.get_component_rich_style(f"rowlist--{name}")
        return st

    def notify_style_update(self) -> None:
        self._styles = {}
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self._styles.get("") or self._styles.setdefault("", self.rich_style)
        if y == 0:
            hs = base + self.style("header")
            segs = [Segment(cell, hs) for cell in re.split(r"(?<=\S)(?= )", self.header())]
            return Strip(segs).adjust_cell_length(width, hs)
        row = int(self.scroll_offset.y) + y - 1
        if row >= self.count:
            return Strip.blank(width, base)
        extra = self.row_style(row)
        line_style = base + extra if extra else base
        cur = None
        if row == self.cursor:          # applied last: a column's own style must not hide it
            cur = self.style("cursor" if self.has_focus and self.active else "cursor-blur")
            line_style = line_style + cur
        segs, used = [], 0
        try:
            cells = self.render_row(row, width)
        except Exception as e:   # noqa: BLE001 - a row that cannot be drawn must not kill the view
            cells = [(f" cannot draw row {row}: {type(e).__name__}: {e}", self.style("error"))]
        for text, st in cells:
            if used >= width:
                break
            text = text[:width - used] if cell_len(text) == len(text) else text
            n = cell_len(text)
            if used + n > width:
                text = set_cell_size(text, width - used)
                n = width - used
            segs.append(Segment(text, (line_style + st + cur if cur else line_style + st) if st else line_style))
            used += n
        if used < width:
            segs.append(Segment(" " * (width - used), line_style))
        return Strip(segs, width)

    # -- cursor ----------------------------------------------------------------------------------------
    def _page(self) -> int:
        return max(1, self.size.height - 2)

    def move_to(self, row: int, *, notify: bool = True, activate: bool = False, center: bool = False) -> None:
        if not self.count:
            return
        row = max(0, min(self.count - 1, row))
        self.cursor = row
        top = int(self.scroll_offset.y)
        h = max(1, self.size.height - 1)
        if center and not top <= row < top + h:
            self.scroll_to(y=max(0, row - h // 2), animate=False, immediate=True)
        elif row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + h:
            self.scroll_to(y=row - h + 1, animate=False, immediate=True)
        self.refresh()
        if notify:
            self.post_message(self.Moved(self, row, activate))

    def action_move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * self._page())

    def action_edge(self, end: int) -> None:
        self.move_to(self.count - 1 if end else 0)

    def action_activate(self) -> None:
        self.move_to(self.cursor, activate=True)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.focus()
            self.move_to(int(self.scroll_offset.y) + event.y - 1, activate=event.chain >= 2)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, self.count + 1)


class PacketList(RowList):
    """Every packet (or those a filter keeps): time, queue, offset, name, one-line summary."""

    def __init__(self, model: TraceModel, **kw):
        super().__init__(model, **kw)
        self.rows: np.ndarray | None = None      # filter result: row -> global packet index
        self.matches: set[int] = set()

    def header(self) -> str:
        return f"  {'time':>11} {'queue':<8} {'offset':<8} {'packet':<19} fields"

    def set_rows(self, rows: np.ndarray | None) -> None:
        keep = self.packet_at(self.cursor) if self.count else None
        self.rows = rows
        self.count = -1
        self.set_count(self.model.n_packets if rows is None else len(rows))
        if keep is not None:
            self.move_to(self.row_of(keep)[0], notify=False, center=True)

    def refresh_count(self) -> None:
        if self.rows is None:
            self.set_count(self.model.n_packets)

    def packet_at(self, row: int) -> int:
        return int(self.rows[row]) if self.rows is not None else row

    def row_of(self, i: int) -> tuple[int, bool]:
        """(row showing packet i or the nearest one, whether it is exactly i)."""
        if self.rows is None:
            return i, True
        r = int(np.searchsorted(self.rows, i))
        exact = r < len(self.rows) and int(self.rows[r]) == i
        return min(r, max(0, len(self.rows) - 1)), exact

    def row_style(self, row: int) -> Style | None:
        i = self.packet_at(row)
        rep = self.model.report
        if rep is not None and (i in rep.flagged_packets()):
            return self.style("flag")
        if i in self.matches:
            return self.style("match")
        return None

    def render_row(self, row: int, width: int) -> list[tuple[str, Style | None]]:
        m = self.model
        i = self.packet_at(row)
        s, k, off, ln, code, depth = m.loc(i)
        sub = m.subs[s]
        q = m.queues[sub.qid]
        p = m.packet(i)
        summary = p.summary(q.family)
        if summary.startswith(p.name):
            summary = summary[len(p.name):]
        eng = ENGINE_NAME.get(code >> 24, "pm4")
        name = ("  " * (depth - 1) + "↳ " if depth else "") + p.name
        mark = "!" if (m.report is not None and i in m.report.flagged_packets()) else \
            ("»" if i in self.matches else " ")
        return [(mark + " ", None), (f"{fmt_t(sub.t):>11} ", self.style("dim")), (fit(q.label, 8) + " ", None),
                (fit(m.where(i), 8) + " ", self.style("dim")), (fit(name, 19) + " ", self.style(eng)),
                (summary.strip(), self.style("error") if p.error else None)]


class IoctlList(RowList):
    """The ioctl records: time, name, result, duration."""

    def header(self) -> str:
        return f"  {'time':>11}  {'ioctl':<28} {'result':<16} {'µs':>8}  record"

    def render_row(self, row: int, width: int):
        n, t, name, ret, err, dur = self.model.ioctls[row]
        res = f"ret {ret}" + (f" errno {err}" if err else "")
        return [("  ", None), (f"{fmt_t(t):>11}  ", self.style("dim")),
                (fit(name.removeprefix("AMDKFD_IOC_"), 28) + " ", self.style("name")),
                (fit(res, 16) + " ", self.style("error") if err or (ret or 0) < 0 else None),
                (f"{dur / 1e3:8.1f}  ", self.style("dim")), (str(n), self.style("dim"))]

    def row_of_record(self, n: int) -> int | None:
        ns = getattr(self, "_ns", None)
        if ns is None or len(ns) != len(self.model.ioctls):
            self._ns = ns = np.array([x[0] for x in self.model.ioctls], np.int64)
        r = int(np.searchsorted(ns, n))
        return r if r < len(ns) and ns[r] == n else None


class AllocList(RowList):
    """Allocations with their VA range, size, domain, flags and lifetime over the trace."""

    BAR = 20

    def header(self) -> str:
        return f"  {'VA range':<30} {'size':>9} {'domain':<8} {'flags':<8} {'lifetime':<{self.BAR}} " \
               f"{'writes':>6}  handle"

    def render_row(self, row: int, width: int):
        m = self.model
        a = m.allocs[row]
        t0, span = m.t_min, max(1, m.t_max - m.t_min)

        def cell(n, default):
            t = m.alloc_t.get(n) if n is not None else None
            return default if t is None else min(self.BAR, max(0, (t - t0) * self.BAR // span))
        lo = cell(a.allocated, 0)
        hi = max(lo + 1, cell(a.freed, self.BAR)) if a.freed is not None else self.BAR
        bar = "·" * lo + "━" * (hi - lo) + "·" * (self.BAR - hi)
        return [("  ", None), (fit(f"{a.va:#x}-{a.end:#x}", 30) + " ", None), (f"{fmt_size(a.size):>9} ", None),
                (fit(a.domain, 8) + " ", self.style("name")), (fit(alloc_flags_short(a.flags), 8) + " ", None),
                (bar[:self.BAR] + " ", self.style("bar")), (f"{a.memwrites:>6}  ", self.style("dim")),
                (f"{a.handle:#x}", self.style("dim"))]


class ReportList(RowList):
    """The replay report's divergences, hangs and injected faults."""

    def header(self) -> str:
        rep = self.model.report
        return f"  {'kind':<11} {'where':<40} what" + (f"   [{rep.summary}]" if rep and rep.summary else "")

    def render_row(self, row: int, width: int):
        it = self.model.report.items[row]
        return [("  ", None), (fit(it.kind, 11) + " ", self.style("error")), (fit(it.where(), 40) + " ", self.style("dim")),
                (it.title, None)]

    def target(self, row: int) -> Target | None:
        return self.model.report.target(self.model.report.items[row])
