"""The TUI's widgets: virtual lists, the timeline and the detail pane."""
