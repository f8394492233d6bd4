"""Recording: the recording port (wraps the host or emulated port and writes every call that
crosses it to a trace) and the machinery it needs, such as `memtrack.WriteTracker`, which tells
the recorder which bytes of GPU-visible CPU mappings the CPU wrote before each submission."""
