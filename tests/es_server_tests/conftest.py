from __future__ import annotations

from tests.es_server.fixtures import es_server, es_server_8, es_server_9

__all__ = ["es_server", "es_server_8", "es_server_9"]
