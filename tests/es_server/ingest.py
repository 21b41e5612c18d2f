"""Ingest pipelines: stored and checked as Elasticsearch does, run only as far as tests need.

``PUT/GET/DELETE _ingest/pipeline/<id>`` keep pipeline bodies (``processors`` required, as
``Pipeline.create`` reads it; GET of an unknown id is 404 with ``{}``; DELETE of an unknown id
is ``resource_not_found_exception`` "pipeline [<id>] is missing", 20_crud.yml).

A write naming a pipeline (the bulk action's ``pipeline``, or ``?pipeline=``) replaces the
index's ``default_pipeline`` (``_none``: no pipeline at all). Of the pipeline's processors
only two effects are modelled: the built-in ``logs@default-pipeline``'s missing-@timestamp
fill (see ``bulk._run_default_pipeline``) and the ``fail`` processor; every other processor
is kept but not run. What the tests rely on:

* a pipeline that does not exist fails the document in the ingest phase with
  ``illegal_argument_exception`` "pipeline with id [<id>] does not exist", status 400
  (IngestService.executePipelines);
* a top-level ``fail`` processor (without ``if``, ``on_failure`` or ``ignore_failure``) fails
  it with ``fail_processor_exception`` and its message, status 500: FailProcessorException is
  a RuntimeException, and a processor failure takes the status of its cause
  (elastic/elasticsearch#48810). The message is used as written (no mustache templates).

An ingest failure is handled as ES 9.1 handles it: kept in the target data stream's failure
store when enabled, else answered as an item error (with ``failure_store: not_enabled`` for a
data stream), see ``bulk.py``. Count-only mode (benchmarks) does not look at pipelines.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .errors import EsError
from .store import Store

NO_PIPELINE = "_none"
BUILTIN_LOGS_PIPELINE = "logs@default-pipeline"
# The built-in pipeline, trimmed to what is modelled (x-pack's logs@default-pipeline).
BUILTIN_PIPELINES: dict[str, dict[str, Any]] = {
    BUILTIN_LOGS_PIPELINE: {
        "processors": [
            {
                "set": {
                    "description": "If '@timestamp' is missing, set it with the ingest timestamp",
                    "field": "@timestamp",
                    "override": False,
                    "copy_from": "_ingest.timestamp",
                }
            }
        ],
        "_meta": {
            "description": "default pipeline for the logs index template installed by x-pack",
            "managed": True,
        },
        "version": 16,
    }
}


@dataclass(frozen=True)
class IngestFailure:
    """Why a document failed in a pipeline: the item error and what a failure document
    records about it (FailureStoreDocumentConverter: pipeline fields only for a processor's
    failure, which carries the pipeline origin headers)."""

    status: int
    type: str
    reason: str
    pipeline_fields: dict[str, Any] = field(default_factory=dict)

    def error(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason}


def put_pipeline(store: Store, pipeline_id: str, body: dict[str, Any]) -> None:
    processors = body.get("processors")
    if processors is None:
        raise EsError(400, "parse_exception", "[processors] required property is missing")
    if not isinstance(processors, list):
        raise EsError(
            400,
            "parse_exception",
            "[processors] property isn't a list, but of type [" + type(processors).__name__ + "]",
        )
    for processor in processors:
        if isinstance(processor, dict) and isinstance(processor.get("fail"), dict):
            config = processor["fail"]
            if "message" not in config:
                raise EsError(
                    400,
                    "parse_exception",
                    "[message] required property is missing",
                    extra={
                        "property_name": "message",
                        "processor_type": "fail",
                        **({"processor_tag": config["tag"]} if "tag" in config else {}),
                    },
                )
    store.pipelines[pipeline_id] = body


def get_pipelines(store: Store, expression: str | None) -> dict[str, Any]:
    if expression is None:
        return dict(store.pipelines)
    patterns = expression.split(",")
    return {
        pipeline_id: body
        for pipeline_id, body in store.pipelines.items()
        if any(fnmatch.fnmatchcase(pipeline_id, p) for p in patterns)
    }


def delete_pipelines(store: Store, expression: str) -> None:
    found = list(get_pipelines(store, expression))
    if not found:
        raise EsError(404, "resource_not_found_exception", f"pipeline [{expression}] is missing")
    for pipeline_id in found:
        del store.pipelines[pipeline_id]


def run(store: Store, pipeline_id: str) -> IngestFailure | None:
    """The failure a document meets in this pipeline, if any (processors are not run)."""
    body = store.pipelines.get(pipeline_id)
    if body is None:
        return IngestFailure(
            400, "illegal_argument_exception", f"pipeline with id [{pipeline_id}] does not exist"
        )
    for processor in body.get("processors") or ():
        config = processor.get("fail") if isinstance(processor, dict) else None
        if not isinstance(config, dict):
            continue
        if "if" in config or "on_failure" in config or config.get("ignore_failure"):
            continue  # not modelled: conditions and failure handlers are not evaluated
        fields: dict[str, Any] = {"pipeline_trace": [pipeline_id], "pipeline": pipeline_id}
        if "tag" in config:
            fields["processor_tag"] = config["tag"]
        fields["processor_type"] = "fail"
        return IngestFailure(500, "fail_processor_exception", str(config["message"]), fields)
    return None
