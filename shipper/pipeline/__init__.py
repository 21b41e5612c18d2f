"""Pure, synchronous processing stages with no I/O (multiline, JSON, drop, redact, metadata)
and the encoder that turns records into the disk buffer's entries."""
