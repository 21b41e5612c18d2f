"""The per-line rules every log source shares, whatever the runtime wrote the lines.

Docker's logs API (`docker/frames.py`), its json-file logs (`docker/jsonfile.py`) and the CRI
log files kubelet has the runtime write all end in the same thing: a container's lines as
`LogRecord`s, each identified by (container id, timestamp, stream, seq). The rules that decide
those values are defined here, once, in plain Python, and every reader calls them:

  timestamps.py  RFC 3339 as Go writes it -> nanoseconds since the epoch, UTC, exact
  seq.py         the `seq` of a line: its place among its stream's lines with that timestamp
  assembler.py   the parts of a line -> one record: joining, the `max_line_bytes` cap and the
                 `truncated` flag, UTF-8 decoding, the order records leave in

`shipper/_native.c` is the only other copy: a faster one of the common case, which hands
every other line back to these; tests/unit/test_native.py checks it against them.
"""
