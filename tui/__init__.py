"""The kfdtrace terminal UI (`kfdtrace view FILE [--report replay.json]`), built on Textual.

    from tui.app import KfdtraceApp, run      # run(path, report_path=None)
    from tui.model import TraceModel          # the UI's index and decoders, no Textual

The core `kfdtrace` package never imports this package (nor Textual); `kfdtrace view` imports it
when it runs.
"""
