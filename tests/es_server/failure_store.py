"""The data stream failure store, as Elasticsearch 9.1 runs it (the 8.x server has none: 8.17).

Reference: "Failure store" (elastic.co/docs/manage-data/data-store/data-streams/failure-store),
the sources named below, and the REST tests of modules/data-streams
(190_failure_store_redirection.yml).

* Which failures: a document bound for a data stream that fails in an ingest pipeline
  (IngestService: the failure store of the *target* stream is resolved, through its template
  when the stream does not exist yet) or on the shard (BulkOperation.processFailure: every
  item failure except a version conflict, in 9.1 also a shard's rejection for backpressure;
  elastic/elasticsearch#148154 stops that only in 9.3/9.4).
* Enabled: the document is stored in the stream's failure write index as a failure
  document, and the item answers like a created document of that index, with
  ``"failure_store":"used"`` after ``_primary_term`` (no error). Not enabled: the item error
  as before, with ``"failure_store":"not_enabled"`` between ``status`` and ``error``
  (BulkItemResponse.toXContent). A version conflict on a stream with the failure store
  enabled carries no field; one on a stream without it carries ``not_enabled``.
* The failure document (FailureStoreDocumentConverter): ``@timestamp`` (when it failed,
  milliseconds), ``document.id`` (if the request had one), ``document.routing`` (if),
  ``document.index`` (the name the request wrote to), ``document.source`` (the source as
  sent for an ingest failure, after pipelines for a shard failure), ``error.type``,
  ``error.message``, ``error.stack_trace`` and, for a processor's failure, ``error.pipeline_
  trace``, ``error.pipeline``, ``error.processor_tag``, ``error.processor_type``. Its ``_id``
  is generated: sending the same failing document twice keeps two failure documents.
"""

from __future__ import annotations

import time
from typing import Any


def failure_document(
    *,
    index: str,
    doc_id: str | None,
    source: dict[str, Any],
    error_type: str,
    message: str,
    pipeline_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if doc_id is not None:
        document["id"] = doc_id
    document["index"] = index
    document["source"] = source
    error: dict[str, Any] = {
        "type": error_type,
        "message": message,
        "stack_trace": f"{_exception_class(error_type)}: {message}\n\tat (stack not modelled)\n",
    }
    error.update(pipeline_fields or {})
    return {"@timestamp": _now_millis(), "document": document, "error": error}


def _exception_class(error_type: str) -> str:
    # ElasticsearchException.getExceptionName is the class name in snake case; the reverse.
    return "".join(part.capitalize() for part in error_type.split("_"))


def _now_millis() -> str:
    # DEFAULT_FORMATTER (strict_date_optional_time) of an Instant with milliseconds.
    ms = time.time_ns() // 1_000_000
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
