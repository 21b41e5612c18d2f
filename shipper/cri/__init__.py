"""Kubernetes container runtimes: the read-only CRI API client (shipper/cri/runtime.py)."""
