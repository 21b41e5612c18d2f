"""Outputs: each reads whole blocks from the disk buffer and acknowledges them once settled."""
