"""An Elasticsearch-compatible test server (8.x/9.x behaviour) for the shipper's tests.

In process::

    server = EsTestServer(major=9)
    url = await server.start(port=0)
    server.faults.fail_requests(503, times=2)
    docs = server.documents("logs-app-default")
    await server.stop(); await server.start(port=server.port)  # outage, data kept

As a process: ``python -m tests.es_server --port 0 --major 8`` prints its URL when ready;
``POST /_test/faults`` and ``GET /_test/stats`` control and observe it. ``--count-only`` keeps
no sources (benchmarks); with the shipper's ``filter_path=errors,items.*.error,items.*.status``
its bulk responses are rendered straight into bytes.

Fidelity notes: request bodies are inflated by the server itself (``encoding.py``: limits apply
to the inflated size, a corrupt body closes the connection as Elasticsearch does);
``filter_path`` prunes like Elasticsearch and never applies to error bodies; ``logs-*-*`` data
streams run the effect of ``logs@default-pipeline`` (a missing ``@timestamp`` gets the ingest
time); ``POST /<data-stream>/_rollover`` starts a new backing index. Ingest pipelines are stored
and checked (a missing one fails the document as ES does), only ``fail`` processors run, and
each stored document remembers the pipeline it named (``ingest.py``). The 9.x server has the
data stream failure store of 9.1 (``failure_store.py``); ``tls_client_ca`` makes it require
client certificates (mutual TLS).

Tests get the server through the fixtures in ``fixtures.py``; with ``SHIPPER_TEST_ES_URL`` set
they get a real cluster instead (see that module's docstring).
"""

from __future__ import annotations

from .app import EsTestServer
from .probe import Probe

__all__ = ["EsTestServer", "Probe"]
