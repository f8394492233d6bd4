"""The kfdtrace trace file format (specified in docs/trace-format.md).

    from kfdtrace.trace import TraceWriter, TraceReader, Record, FORMAT_VERSION, MAGIC

`TraceWriter` appends records and content-addressed blobs in checksummed, compressed blocks and
finalizes the file with an index; `TraceReader` opens it from that index (or recovers a file whose
writer was killed) and streams records. `format.KINDS` is the record schema.
"""
from kfdtrace.trace.format import FORMAT_VERSION, KINDS, MAGIC, BlobRef, validate
from kfdtrace.trace.reader import Record, TraceReader
from kfdtrace.trace.writer import TraceWriter, finalize_on_exit

__all__ = ["TraceWriter", "TraceReader", "Record", "BlobRef", "FORMAT_VERSION", "MAGIC", "KINDS",
           "validate", "finalize_on_exit"]
