"""`?`: every key the app and its views answer to, read from their bindings (so it cannot drift)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

MOUSE = [("click", "select a row, a timeline item or a detail link"), ("double click", "open (like enter)"),
         ("wheel", "scroll the view under the pointer"), ("tab titles", "switch view")]


def _key_text(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "plus": "+", "minus": "-", "equals_sign": "=",
             "less_than_sign": "<", "greater_than_sign": ">", "backspace": "backspace", "escape": "esc",
             "full_stop": ".", "comma": ","}
    return " ".join(names.get(k, k) for k in key.split(","))


def key_table(groups: list[tuple[str, list]], help_text: dict | None = None) -> list[tuple[str, str, str]]:
    """[(view, keys, what)] from (view name, BINDINGS) pairs, skipping duplicate rows; `help_text`
    maps an action to a longer description than the binding's own."""
    rows, seen = [], set()
    for view, bindings in groups:
        for b in bindings:
            if not isinstance(b, Binding):
                b = Binding(*b)
            key = (view, b.action)
            if key in seen:
                continue
            seen.add(key)
            rows.append((view, _key_text(b.key), (help_text or {}).get(b.action) or b.description or b.action))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close help")]

    def __init__(self, rows: list[tuple[str, str, str]]):
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        lines = ["[b]kfdtrace view — keys[/b]", ""]
        last = None
        for view, key, what in self.rows:
            if view != last:
                lines.append(f"[b $accent]{view}[/]")
                last = view
            lines.append(f"  [b]{key:<22}[/b] {what}")
        lines += ["", "[b $accent]mouse[/]"] + [f"  [b]{k:<22}[/b] {v}" for k, v in MOUSE]
        lines += ["", "[dim]esc, q or ? closes this help[/]"]
        with VerticalScroll(id="help-body"):
            yield Static("\n".join(lines).replace("[/b]", "[/]"), id="help-text", markup=True)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
