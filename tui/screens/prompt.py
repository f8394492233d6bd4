"""The search prompt (`/`) and the filter form (`f`)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class SearchScreen(ModalScreen[str | None]):
    """A one-line prompt docked at the bottom; enter searches, esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, value: str = ""):
        super().__init__()
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="search-box"):
            yield Label("search packets: a name (RELEASE_MEM, wait), a register (COMPUTE_PGM_LO), a value "
                        "(0x7f3a00600008) — or name: reg: addr: value: prefixes", id="search-help")
            yield Input(value=self.value, placeholder="/", id="search-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FilterScreen(ModalScreen[dict | None]):
    """Queue, engine, packet kind and time range; empty means "any"."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: dict, choices: str):
        super().__init__()
        self.current = current
        self.choices = choices

    def compose(self) -> ComposeResult:
        c = self.current
        with Vertical(id="filter-box"):
            yield Label("[b]filter the packet list[/b]  (empty = any; lists are comma separated)")
            yield Static(self.choices, id="filter-choices")
            for key, label, hint in (("queues", "queues", "e.g. 1,3"), ("engines", "engines", "pm4,sdma,aql"),
                                     ("kinds", "packet kinds", "RELEASE_MEM,WAIT (names or parts)"),
                                     ("time", "time range", "e.g. 0.5ms-2ms, 1ms-, -3ms")):
                with Horizontal(classes="filter-row"):
                    yield Label(label, classes="filter-label")
                    yield Input(value=c.get(key, ""), placeholder=hint, id=f"filter-{key}")
            with Horizontal(id="filter-buttons"):
                yield Button("apply", id="filter-apply", variant="primary")
                yield Button("clear", id="filter-clear")
                yield Button("cancel", id="filter-cancel")

    def _values(self) -> dict:
        return {k: self.query_one(f"#filter-{k}", Input).value.strip() for k in ("queues", "engines", "kinds", "time")}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(self._values())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "filter-apply":
            self.dismiss(self._values())
        elif event.button.id == "filter-clear":
            self.dismiss({})
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
