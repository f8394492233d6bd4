"""The detail pane: every decoded field of the selection, as sections of label / value / note lines.

Lines that point somewhere (an address inside an allocation, the submission of a packet, the
first packet of a submission, a memwrite, a submission touching an allocation) carry a link:
move the pane's cursor onto one and press enter, or click it, to jump there (`Detail.Follow`).
"""
from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.model import Line, Section, Target
from tui.widgets.lists import fit


class Detail(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"detail--title", "detail--label", "detail--value", "detail--note", "detail--link",
                         "detail--cursor", "detail--error", "detail--dim", "detail--asm", "detail--raw",
                         "detail--changed", "detail--asm-label"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "Top", show=False),
        Binding("end", "edge(1)", "Bottom", show=False),
        Binding("enter", "follow", "Follow link", show=False),
    ]

    class Follow(Message):
        def __init__(self, target: Target):
            super().__init__()
            self.target = target

    def __init__(self, **kw):
        super().__init__(**kw)
        self.lines: list[tuple[str, Line | None]] = []     # ("title", None) | ("line", Line)
        self.cursor = 0
        self.label_w = 12
        self._styles: dict[str, Style] = {}

    def show(self, sections: list[Section]) -> None:
        out: list[tuple[str, Line | None]] = []
        lw = 8
        for k, sec in enumerate(sections):
            if k:
                out.append(("blank", None))
            out.append(("title", Line(sec.title)))
            for ln in sec.lines:
                out.append(("line", ln))
                if ln.style not in ("asm", "raw", "label"):
                    lw = max(lw, min(26, cell_len(ln.label)))
        self.lines, self.label_w = out, lw + 2
        self.cursor = next((j for j, (kind, ln) in enumerate(out) if kind == "line" and ln.link), 0)
        width = max((self._text_len(ln) for kind, ln in out if ln), default=0)
        self.virtual_size = Size(max(width, self.size.width), len(out))
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    def text(self) -> str:
        """The pane as plain text (what tests and screenshots read)."""
        out = []
        for kind, ln in self.lines:
            if kind == "title":
                out.append(ln.label)
            elif kind == "line":
                out.append(f"{ln.label:<{self.label_w}}{ln.value}  {ln.note}".rstrip())
            else:
                out.append("")
        return "\n".join(out)

    def _text_len(self, ln: Line) -> int:
        return self.label_w + cell_len(ln.value) + 2 + cell_len(ln.note)

    def _st(self, name: str) -> Style:
        st = self._styles.get(name)
        if st is None:
            st = self._styles[name] = self.get_component_rich_style(f"detail--{name}") if name else self.rich_style
        return st

    def notify_style_update(self) -> None:
        self._styles = {}
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        sx, sy = int(self.scroll_offset.x), int(self.scroll_offset.y)
        row = sy + y
        base = self._st("")
        if row >= len(self.lines):
            return Strip.blank(width, base)
        kind, ln = self.lines[row]
        if kind == "blank":
            return Strip.blank(width, base)
        if kind == "title":
            segs = [Segment(ln.label, base + self._st("title"))]
        else:
            cur = self._st("cursor") if (row == self.cursor and self.has_focus) else Style()
            vst = {"error": "error", "dim": "dim", "asm": "asm", "raw": "raw", "changed": "changed",
                   "label": "asm-label"}.get(ln.style, "value")
            if ln.style in ("asm", "raw", "label"):
                segs = [Segment(("  " + ln.label + " ") if ln.label else "  ", base + self._st("label") + cur),
                        Segment(ln.value, base + self._st(vst) + cur)]
            else:
                segs = [Segment(fit(" " + ln.label, self.label_w), base + self._st("label") + cur),
                        Segment(ln.value, base + self._st("link" if ln.link else vst) + cur)]
                if ln.note:
                    segs.append(Segment("  " + ln.note, base + self._st("link" if ln.link and not ln.value else "note")
                                        + cur))
        strip = Strip(segs).crop_extend(sx, sx + width, base)
        return strip

    # -- cursor and links -------------------------------------------------------------------------
    def action_move(self, d: int) -> None:
        if not self.lines:
            return
        j = self.cursor + d
        while 0 <= j < len(self.lines) and self.lines[j][0] != "line":
            j += 1 if d > 0 else -1
        if 0 <= j < len(self.lines):
            self.cursor = j
        self._show_cursor()

    def action_page(self, d: int) -> None:
        self.cursor = max(0, min(len(self.lines) - 1, self.cursor + d * max(1, self.size.height - 1)))
        self._show_cursor()

    def action_edge(self, end: int) -> None:
        self.cursor = len(self.lines) - 1 if end else 0
        self._show_cursor()

    def _show_cursor(self) -> None:
        top, h = int(self.scroll_offset.y), self.size.height
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + h:
            self.scroll_to(y=self.cursor - h + 1, animate=False, immediate=True)
        self.refresh()

    def action_follow(self) -> None:
        if 0 <= self.cursor < len(self.lines):
            ln = self.lines[self.cursor][1]
            if ln is not None and ln.link is not None:
                self.post_message(self.Follow(ln.link))
                return
        self.app.bell()

    def links(self) -> list[Target]:
        return [ln.link for kind, ln in self.lines if kind == "line" and ln.link is not None]

    def on_click(self, event: events.Click) -> None:
        self.focus()
        row = int(self.scroll_offset.y) + event.y
        if 0 <= row < len(self.lines) and self.lines[row][0] == "line":
            self.cursor = row
            self.refresh()
            if self.lines[row][1].link is not None:
                self.post_message(self.Follow(self.lines[row][1].link))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
