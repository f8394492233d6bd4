"""kfdtrace: record, replay and inspect what AMD GPU workloads send across /dev/kfd."""

__version__ = "0.1.0"


def mark(label: str) -> None:
    """Put a user marker into the trace being recorded (a no-op when not recording)."""
    from kfdtrace.port import current_recorder  # local import: keep `import kfdtrace` cheap

    rec = current_recorder()
    if rec is not None:
        rec.mark(label)
