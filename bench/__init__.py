"""Throughput and scale benchmark of the shipper against the real Docker daemon.

Run `python -m bench --help`; see README.md under "Performance" for the figures.
"""
