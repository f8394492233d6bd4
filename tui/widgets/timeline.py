"""The timeline: one lane per queue plus the CPU lane, time running left to right.

Each cell of a lane covers (view width / cells) nanoseconds; a cell shows a submission block when
any submission of that queue falls in it (counted with one `bincount`, so a million items cost a
few milliseconds), and on the CPU lane the most telling record in it (marker > wait > ioctl > …).
The item under the timeline's cursor — which is the app's selection — is drawn reversed; replay
report items are drawn in the error style. Zoom and pan change the view window; the cursor moves
from item to item within a lane (left/right) and between lanes (up/down).
"""
from __future__ import annotations

import math

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.model import Target, TraceModel, fmt_t
from tui.widgets.lists import fit

LABEL = 12
#: CPU-lane glyph per kind rank (model.CPU_KINDS)
CPU_GLYPH = {0: "▼", 1: "◆", 2: "◇", 3: "↑", 4: "│", 5: "·", 6: "□", 7: "▫", 8: "▫", 9: "✖", 10: "≡"}
ENGINE_STYLE = {1: "pm4", 2: "sdma", 3: "aql"}


class Timeline(ScrollView, can_focus=True):
    """Lanes over time. `select(target)` highlights an item; the user's moves post `Picked`."""

    COMPONENT_CLASSES = {"timeline--axis", "timeline--label", "timeline--label-cursor", "timeline--pm4",
                         "timeline--sdma", "timeline--aql", "timeline--cpu", "timeline--marker",
                         "timeline--cursor", "timeline--flag", "timeline--empty"}
    BINDINGS = [
        Binding("left,h", "step(-1)", "Previous item", show=False),
        Binding("right,l", "step(1)", "Next item", show=False),
        Binding("up,k", "lane(-1)", "Lane up", show=False),
        Binding("down,j", "lane(1)", "Lane down", show=False),
        Binding("enter", "open", "Show packets", show=False),
    ]

    class Picked(Message):
        """The user picked `target` on the timeline (enter/double click: `activate`)."""

        def __init__(self, target: Target, activate: bool = False):
            super().__init__()
            self.target, self.activate = target, activate

    def __init__(self, model: TraceModel, **kw):
        super().__init__(**kw)
        self.model = model
        self.v0, self.v1 = 0, 1
        self.lane = 1
        self.cur_t: int | None = None          # time of the highlighted item
        self.cur_lane: int | None = None
        self._lane_t: dict[int, np.ndarray] = {}
        self._lane_sub: dict[int, np.ndarray] = {}
        self._cache: dict = {}
        self._fitted = False
        z = np.zeros(0, np.int64)
        self._cpu = (z, z, z)
        self._flags: dict[int, list[int]] = {}
        self._styles: dict[str, Style] = {}

    # -- data ------------------------------------------------------------------------------------
    def reindex(self) -> None:
        """Rebuild per-lane item arrays from the model (during loading: what is there so far)."""
        m = self.model
        self._lane_t, self._lane_sub = {}, {}
        if m.loaded:
            order = np.lexsort((m.sub_n, m.sub_t))
            lanes = m.sub_lane[order]
            for lane in range(1, len(m.lanes)):
                sel = order[lanes == lane]
                self._lane_sub[lane] = sel
                self._lane_t[lane] = m.sub_t[sel]
            self._cpu = (m.cpu_t, m.cpu_n, m.cpu_kind)
        else:
            subs = list(m.subs)
            t = np.array([s.t for s in subs], np.int64)
            ln = np.array([m.queues[s.qid].lane for s in subs], np.int32)
            for lane in range(1, len(m.lanes)):
                sel = np.flatnonzero(ln == lane)
                self._lane_sub[lane], self._lane_t[lane] = sel, t[sel]
            cpu = np.array(m.cpu[: len(m.cpu)], np.int64).reshape(-1, 3)
            self._cpu = (cpu[:, 0], cpu[:, 1], cpu[:, 2])
        self._flags = {}
        rep = m.report
        if rep is not None and m.loaded:             # where each finding happened: its submission,
            for it in rep.items:                      # and the CPU-side record (wait, checksum) if any
                if it.sub is not None:
                    sub = m.subs[it.sub]
                    self._flags.setdefault(m.queues[sub.qid].lane, []).append(sub.t)
                if it.record is not None and (it.sub is None or m.subs[it.sub].n != it.record):
                    t = m.time_of(Target("record", it.record))
                    if t is not None:
                        self._flags.setdefault(0, []).append(t)
                elif it.sub is None and it.t is not None:
                    lane = m.queues[it.queue].lane if it.queue in m.queues else 0
                    self._flags.setdefault(lane, []).append(it.t)
        if not self._fitted or not m.loaded:
            self.fit_all(gpu=m.loaded)
        if m.loaded:
            self._fitted = True
        self.virtual_size = Size(self.size.width, len(m.lanes) + 1)
        self._cache.clear()
        self.refresh()

    def fit_all(self, gpu: bool = False) -> None:
        """Show the whole trace, or (`gpu`) the span of its submissions — a recording often spends
        most of its time in CPU-side setup before the first submission."""
        m = self.model
        lo, hi = m.t_min, max(m.t_max, m.t_min + 1)
        if gpu and m.loaded and len(m.sub_t) > 1:
            lo, hi = int(m.sub_t.min()), int(m.sub_t.max()) + 1
        pad = max(1, (hi - lo) // 50)
        self.v0, self.v1 = lo - pad, hi + pad
        self._cache.clear()
        self.refresh()

    # -- view window ------------------------------------------------------------------------------
    def zoom(self, factor: float) -> None:
        center = self.cur_t if self.cur_t is not None and self.v0 <= self.cur_t <= self.v1 else (self.v0 + self.v1) // 2
        w = max(50, int((self.v1 - self.v0) * factor))
        full = max(1, self.model.t_max - self.model.t_min) * 2
        w = min(w, full)
        frac = (center - self.v0) / max(1, self.v1 - self.v0)
        self.v0 = int(center - w * frac)
        self.v1 = self.v0 + w
        self._cache.clear()
        self.refresh()

    def pan(self, fraction: float) -> None:
        d = int((self.v1 - self.v0) * fraction)
        self.v0 += d
        self.v1 += d
        self._cache.clear()
        self.refresh()

    def _ensure_visible(self, t: int) -> None:
        if not self.v0 <= t <= self.v1:
            w = self.v1 - self.v0
            self.v0 = t - w // 2
            self.v1 = self.v0 + w
            self._cache.clear()

    @property
    def cells(self) -> int:
        return max(1, self.scrollable_content_region.width - LABEL)

    def t_of_cell(self, x: int) -> int:
        return self.v0 + (x * (self.v1 - self.v0)) // self.cells

    def cell_of(self, t: int) -> int:
        return int((t - self.v0) * self.cells // max(1, self.v1 - self.v0))

    # -- selection --------------------------------------------------------------------------------
    def select(self, tgt: Target | None) -> None:
        """Highlight the item of the app's selection (a submission's packet or a record)."""
        m = self.model
        self.cur_t = self.cur_lane = None
        if tgt is not None and tgt.kind == "packet" and tgt.index < m.n_packets:
            sub = m.subs[m.sub_of(tgt.index)]
            self.cur_t, self.cur_lane = sub.t, m.queues[sub.qid].lane
        elif tgt is not None and tgt.kind == "record":
            i = m.packet_at_record(tgt.index) if m.loaded else None
            if i is not None:
                return self.select(Target("packet", i))
            t = m.time_of(tgt)
            if t is not None:
                self.cur_t, self.cur_lane = t, 0
        if self.cur_lane is not None:
            self.lane = self.cur_lane
            self._ensure_visible(self.cur_t)
        self._cache.clear()
        self.refresh()

    def _items(self, lane: int) -> tuple[np.ndarray, list]:
        """(sorted times, targets factory) of a lane."""
        if lane == 0:
            t, n, _ = self._cpu
            order = np.argsort(t, kind="stable") if not self.model.loaded else np.arange(len(t))
            return t[order], [("record", n[order])]
        subs = self._lane_sub.get(lane, np.zeros(0, np.int64))
        return self._lane_t.get(lane, np.zeros(0, np.int64)), [("sub", subs)]

    def _target(self, lane: int, j: int) -> Target:
        t, (kind_arr,) = self._items(lane)
        kind, arr = kind_arr
        if kind == "record":
            return Target("record", int(arr[j]))
        sub = self.model.subs[int(arr[j])]
        return Target("packet", sub.first) if sub.count else Target("record", sub.n)

    def _nearest(self, lane: int, t: int, direction: int = 0) -> int | None:
        ts, _ = self._items(lane)
        if not len(ts):
            return None
        if direction > 0:
            j = int(np.searchsorted(ts, t, side="right"))
            return j if j < len(ts) else None
        if direction < 0:
            j = int(np.searchsorted(ts, t, side="left")) - 1
            return j if j >= 0 else None
        j = int(np.searchsorted(ts, t))
        best = [k for k in (j - 1, j) if 0 <= k < len(ts)]
        return min(best, key=lambda k: abs(int(ts[k]) - t)) if best else None

    def action_step(self, d: int) -> None:
        lane = self.lane
        t = self.cur_t if self.cur_t is not None and self.cur_lane == lane else self.t_of_cell(self.cells // 2)
        j = self._nearest(lane, t, d)
        if j is None:
            self.app.bell()
            return
        self.post_message(self.Picked(self._target(lane, j)))

    def action_lane(self, d: int) -> None:
        lanes = len(self.model.lanes)
        self.lane = (self.lane + d) % lanes
        t = self.cur_t if self.cur_t is not None else (self.v0 + self.v1) // 2
        j = self._nearest(self.lane, t)
        if j is not None:
            self.post_message(self.Picked(self._target(self.lane, j)))
        else:
            self._cache.clear()
            self.refresh()

    def action_open(self) -> None:
        j = self._nearest(self.lane, self.cur_t if self.cur_t is not None else self.v0)
        if j is not None:
            self.post_message(self.Picked(self._target(self.lane, j), activate=True))

    def on_click(self, event: events.Click) -> None:
        self.focus()
        lane = int(self.scroll_offset.y) + event.y - 1
        if event.y < 1 or not 0 <= lane < len(self.model.lanes):
            return
        self.lane = lane
        x = event.x - LABEL
        if x < 0:
            self._cache.clear()
            self.refresh()
            return
        t = self.t_of_cell(x) + (self.v1 - self.v0) // (2 * self.cells)
        j = self._nearest(lane, t)
        if j is not None:
            ts, _ = self._items(lane)
            if abs(self.cell_of(int(ts[j])) - x) <= 2:
                self.post_message(self.Picked(self._target(lane, j), activate=event.chain >= 2))

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.model.lanes) + 1)
        self._cache.clear()

    # -- drawing ----------------------------------------------------------------------------------
    def _st(self, name: str) -> Style:
        st = self._styles.get(name)
        if st is None:
            st = self._styles[name] = self.get_component_rich_style(f"timeline--{name}") if name else self.rich_style
        return st

    def notify_style_update(self) -> None:
        self._styles = {}
        self._cache.clear()
        super().notify_style_update()

    def _axis(self, width: int) -> Strip:
        """Tick labels at round times; each label is its own segment (exact columns in exports)."""
        cells = self.cells
        span = max(1, self.v1 - self.v0)
        step = _nice_step(span / max(1, cells // 12))
        base = self._st('')
        axis = base + self._st("axis")
        segs = [Segment(fit(f" ↔{fmt_t(span)}", LABEL), base + self._st("label"))]
        x_end = 0
        t = math.ceil(self.v0 / step) * step
        while t <= self.v1:
            x = self.cell_of(t)
            label = "┊" + fmt_t(t)
            if x >= x_end and x + len(label) <= cells:
                if x > x_end:
                    segs.append(Segment(" " * (x - x_end), axis))
                segs.append(Segment(label, axis))
                x_end = x + len(label) + 1
                segs.append(Segment(" ", axis))
            t += step
        return Strip(segs)

    def _lane(self, lane: int, width: int) -> Strip:
        cells = self.cells
        base = self._st('')
        m = self.model
        label_style = self._st("label-cursor" if lane == self.lane and self.has_focus else "label")
        label = fit(" " + (m.lanes[lane] if lane < len(m.lanes) else "?"), LABEL)
        glyphs = [" "] * cells
        styles: list[Style | None] = [None] * cells
        ts, _ = self._items(lane)
        span = max(1, self.v1 - self.v0)
        if len(ts):
            x = ((ts - self.v0) * cells) // span
            ok = (x >= 0) & (x < cells)
            if lane == 0:
                ranks = self._cpu[2]
                if not m.loaded:
                    ranks = ranks[np.argsort(self._cpu[0], kind="stable")]
                best = np.full(cells, 99, np.int64)
                np.minimum.at(best, x[ok], ranks[ok])
                for c in np.flatnonzero(best < 99).tolist():
                    r = int(best[c])
                    glyphs[c] = CPU_GLYPH.get(r, "·")
                    styles[c] = self._st("marker" if r == 0 else "cpu")
            else:
                counts = np.bincount(x[ok], minlength=cells)
                st = self._st({q.lane: q.engine for q in m.queues.values()}.get(lane, "pm4"))
                for c in np.flatnonzero(counts).tolist():
                    glyphs[c] = "█" if counts[c] > 1 or span / cells > 2_000 else "▌"
                    styles[c] = st
        for ft in self._flags.get(lane, []):
            c = ((ft - self.v0) * cells) // span
            if 0 <= c < cells:
                glyphs[c] = "✖"
                styles[c] = self._st("flag")
        if self.cur_lane == lane and self.cur_t is not None:
            c = self.cell_of(self.cur_t)
            if 0 <= c < cells:
                glyphs[c] = "◆" if glyphs[c] in " █▌" else glyphs[c]
                styles[c] = self._st("cursor")
        segs = [Segment(label, base + label_style)]
        run, run_style = [], None
        for g, s in zip(glyphs, styles):
            if s is not run_style and run:
                segs.append(Segment("".join(run), base + run_style if run_style else base + self._st("empty")))
                run = []
            run_style = s
            run.append(g)
        if run:
            segs.append(Segment("".join(run), base + run_style if run_style else base + self._st("empty")))
        return Strip(segs)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        key = (y, int(self.scroll_offset.y), width, self.has_focus, self.lane)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if y == 0:
            strip = self._axis(width)
        else:
            lane = int(self.scroll_offset.y) + y - 1
            strip = self._lane(lane, width) if lane < len(self.model.lanes) else Strip.blank(width, self._st(''))
        strip = strip.adjust_cell_length(width, self._st(''))
        self._cache[key] = strip
        return strip

    def on_focus(self) -> None:
        self._cache.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._cache.clear()
        self.refresh()


def _nice_step(raw: float) -> int:
    """1, 2 or 5 × a power of ten, at least `raw` (ns)."""
    if raw <= 1:
        return 1
    p = 10 ** int(math.floor(math.log10(raw)))
    for k in (1, 2, 5, 10):
        if k * p >= raw:
            return int(k * p)
    return int(10 * p)
