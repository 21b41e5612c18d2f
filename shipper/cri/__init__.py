"""Kubernetes on containerd or CRI-O: pod logs from kubelet's CRI log files, with the pod's
metadata from the runtime's CRI API (read-only). One question per module; docs/cri.md has
the map and the measured facts of the files and the API."""
