"""An Elasticsearch-compatible test server (8.x/9.x behaviour) for the shipper's tests.

In process::

    server = EsTestServer(major=9)
    url = await server.start(port=0)
    server.faults.fail_requests(503, times=2)
    docs = server.documents("logs-app-default")
    await server.stop(); await server.start(port=server.port)  # outage, data kept

As a process: ``python -m tests.es_server --port 0 --major 8`` prints its URL when ready;
``POST /_test/faults`` and ``GET /_test/stats`` control and observe it.
"""

from __future__ import annotations

from .app import EsTestServer
from .probe import Probe

__all__ = ["EsTestServer", "Probe"]
