"""HTTP layer: routing, headers, auth, compression, fault hooks and the EsTestServer lifecycle.

Every route is dispatched by one handler so that unknown paths and wrong methods get the bodies
Elasticsearch's RestController produces (``no handler found ...`` 400, ``Incorrect HTTP method``
405) instead of aiohttp's defaults.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from . import encoding as encoding_
from . import ingest, media, search
from .bulk import Raw, count_bulk, execute_bulk, filter_set
from .errors import EsError, PlainError, index_not_found
from .faults import Faults, Stats, rejected_request_reason
from .store import Store, nest_settings, new_uuid

VERSIONS: dict[int, dict[str, Any]] = {
    # Copied from GET / of the official docker images.
    8: {
        "number": "8.17.0",
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": "2b6a7fed44faa321997703718f07ee0420804b41",
        "build_date": "2024-12-11T12:08:05.663969764Z",
        "build_snapshot": False,
        "lucene_version": "9.12.0",
        "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    9: {
        "number": "9.1.2",
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": "ca1a70216fbdefbef3c65b1dff04903ea5964ef5",
        "build_date": "2025-08-11T15:04:41.449624592Z",
        "build_snapshot": False,
        "lucene_version": "10.2.2",
        "minimum_wire_compatibility_version": "8.19.0",
        "minimum_index_compatibility_version": "8.0.0",
    },
}
WWW_AUTHENTICATE = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
_MISSING = object()

Result = tuple[int, Any]
Handler = Callable[["Request"], Awaitable[Result]]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: bytes
    args: dict[str, str]
    headers: Any

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] {exc}") from None
        if not isinstance(parsed, dict):
            raise EsError(400, "parse_exception", "request body or source parameter is required")
        return parsed


def filter_path(obj: Any, expression: str) -> Any:
    """FilterPathBasedFilter's inclusive filtering: objects and arrays left empty are pruned.

    A path that ends inside a value keeps the whole value; array elements do not consume a path
    segment; an element with nothing left is dropped (which is why ``items.*.error`` alone does
    not keep bulk items aligned, and Beats adds ``items.*.status``).
    """
    patterns = [p.split(".") for p in sorted(filter_set(expression) or ())]

    def walk(node: Any, pats: list[list[str]]) -> Any:
        if any(not p for p in pats):
            return node
        if isinstance(node, list):
            items = [walk(x, pats) for x in node]
            kept = [x for x in items if x is not _MISSING]
            return kept if kept else _MISSING
        if not isinstance(node, dict):
            return _MISSING
        out = {}
        for key, value in node.items():
            sub: list[list[str]] = []
            for p in pats:
                if p[0] == "**":
                    sub.append(p)
                    if len(p) > 1 and fnmatch.fnmatchcase(key, p[1]):
                        sub.append(p[2:])
                elif fnmatch.fnmatchcase(key, p[0]):
                    sub.append(p[1:])
            if sub:
                result = walk(value, sub)
                if result is not _MISSING:
                    out[key] = result
        return out if out else _MISSING

    result = walk(obj, patterns)
    return {} if result is _MISSING else result


class EsApp:
    """Routes and handlers over a Store; one per server (it outlives restarts, like ES's data)."""

    def __init__(self, server: EsTestServer) -> None:
        self.server = server
        self.store = server.store
        self.routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = []
        r = self._route
        r("/", GET=self.info, HEAD=self.info)
        r("/_bulk", POST=self.bulk, PUT=self.bulk)
        r("/_search", GET=self.search, POST=self.search)
        r("/_count", GET=self.count, POST=self.count)
        r("/_refresh", GET=self.refresh, POST=self.refresh)
        r("/_mapping", GET=self.get_mapping)
        r("/_pit", DELETE=self.close_pit)
        r("/_index_template", GET=self.get_template)
        r(
            "/_index_template/{name}",
            PUT=self.put_template,
            POST=self.put_template,
            GET=self.get_template,
            HEAD=self.head_template,
            DELETE=self.delete_template,
        )
        r("/_component_template", GET=self.get_component)
        r(
            "/_component_template/{name}",
            PUT=self.put_component,
            POST=self.put_component,
            GET=self.get_component,
            DELETE=self.delete_component,
        )
        r("/_ingest/pipeline", GET=self.get_pipeline)
        r(
            "/_ingest/pipeline/{id}",
            PUT=self.put_pipeline,
            GET=self.get_pipeline,
            DELETE=self.delete_pipeline,
        )
        r("/_ilm/policy", GET=self.get_ilm)
        r("/_ilm/policy/{name}", PUT=self.put_ilm, GET=self.get_ilm, DELETE=self.delete_ilm)
        r("/_data_stream", GET=self.get_data_stream)
        r(
            "/_data_stream/{name}",
            PUT=self.put_data_stream,
            GET=self.get_data_stream,
            DELETE=self.delete_data_stream,
        )
        r("/_resolve/index/{name}", GET=self.resolve_index)
        r("/_cluster/health", GET=self.health)
        r("/_cluster/health/{index}", GET=self.health)
        r("/_test/faults", POST=self.test_faults)
        r("/_test/stats", GET=self.test_stats)
        r("/_test/reset", POST=self.test_reset)
        r("/{index}/_bulk", POST=self.bulk, PUT=self.bulk)
        r("/{index}/_search", GET=self.search, POST=self.search)
        r("/{index}/_count", GET=self.count, POST=self.count)
        r("/{index}/_refresh", GET=self.refresh, POST=self.refresh)
        r("/{index}/_mapping", GET=self.get_mapping)
        r("/{index}/_pit", POST=self.open_pit)
        r("/{index}/_rollover", POST=self.rollover)
        r("/{index}/_doc", POST=self.index_doc)
        r(
            "/{index}/_doc/{id}",
            GET=self.get_doc,
            PUT=self.index_doc,
            POST=self.index_doc,
            DELETE=self.delete_doc,
        )
        r("/{index}/_create/{id}", PUT=self.create_doc, POST=self.create_doc)
        r(
            "/{index}",
            PUT=self.create_index,
            GET=self.get_index,
            HEAD=self.head_index,
            DELETE=self.delete_index,
        )

    def _route(self, pattern: str, **methods: Handler) -> None:
        segments = tuple(s for s in pattern.split("/") if s)
        self.routes.append((segments, methods))

    def resolve(self, method: str, path: str, uri: str) -> tuple[Handler, dict[str, str]]:
        parts = tuple(s for s in path.split("/") if s)
        allowed: list[str] | None = None
        # Routes are declared most specific first; like ES's path trie, the first path that
        # matches decides, so GET /_bulk is a 405 rather than a GET of an index named _bulk.
        for segments, methods in self.routes:
            if len(segments) != len(parts):
                continue
            args: dict[str, str] = {}
            for seg, part in zip(segments, parts, strict=True):
                if seg.startswith("{"):
                    args[seg[1:-1]] = part
                elif seg != part:
                    break
            else:
                if method in methods:
                    return methods[method], args
                allowed = list(methods)
                break
        if allowed is not None:
            raise PlainError(
                405,
                f"Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: "
                f"[{', '.join(allowed)}]",
            )
        raise PlainError(
            400, f"no handler found for uri [{uri}] and method [{method}]", with_status=False
        )

    # -- cluster --------------------------------------------------------------------------
    async def info(self, req: Request) -> Result:
        s = self.server
        return 200, {
            "name": s.node_name,
            "cluster_name": s.cluster_name,
            "cluster_uuid": s.cluster_uuid,
            "version": s.version,
            "tagline": "You Know, for Search",
        }

    async def health(self, req: Request) -> Result:
        indices = list(self.store.indices.values())
        if "index" in req.args:
            indices = self.store.resolve_read(req.args["index"])
        unassigned = sum(i.replicas for i in indices)
        status = "yellow" if unassigned else "green"
        wanted = req.params.get("wait_for_status")
        rank = {"green": 0, "yellow": 1, "red": 2}
        timed_out = wanted is not None and rank[status] > rank.get(wanted, 2)
        if timed_out:
            await asyncio.sleep(_seconds(req.params.get("timeout", "30s")))
        active = len(indices)
        body = {
            "cluster_name": self.server.cluster_name,
            "status": status,
            "timed_out": timed_out,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": active,
            "active_shards": active,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": unassigned,
            "unassigned_primary_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0 * active / (active + unassigned)
            if active + unassigned
            else 100.0,
        }
        return (408 if timed_out else 200), body

    # -- documents ------------------------------------------------------------------------
    async def bulk(self, req: Request) -> Result:
        stats = self.server.stats
        stats.bulk_requests += 1
        stats.last_bulk_headers = {str(k): v for k, v in req.headers.items()}
        default_index = req.args.get("index")
        if self.server.count_only:
            raw = count_bulk(
                self.store,
                req.body,
                default_index,
                stats,
                self.server.detect_duplicates,
                self.server.count_containers,
                req.params.get("filter_path"),
            )
            return 200, raw
        refresh = req.params.get("refresh") in ("", "true", "wait_for")
        return 200, execute_bulk(
            self.store,
            req.body,
            default_index,
            self.server.faults,
            stats,
            refresh,
            req.params.get("pipeline"),
        )

    async def index_doc(self, req: Request) -> Result:
        op = "create" if req.params.get("op_type") == "create" else "index"
        return await self._single_write(req, op)

    async def create_doc(self, req: Request) -> Result:
        return await self._single_write(req, "create")

    async def _single_write(self, req: Request, op: str) -> Result:
        meta: dict[str, Any] = {"_index": req.args["index"]}
        if "id" in req.args:
            meta["_id"] = req.args["id"]
        body = orjson.dumps({op: meta}) + b"\n" + req.body.strip() + b"\n"
        refresh = req.params.get("refresh") in ("", "true", "wait_for")
        result = execute_bulk(
            self.store,
            body,
            None,
            self.server.faults,
            self.server.stats,
            refresh,
            req.params.get("pipeline"),
        )
        item = result["items"][0][op]
        if "error" in item:
            extra = {
                k: v for k, v in item["error"].items() if k not in ("type", "reason", "caused_by")
            }
            if "failure_store" in item:
                # The index API puts it in the error (ExceptionWithFailureStoreStatus).
                extra["failure_store"] = item["failure_store"]
            raise EsError(
                item["status"],
                item["error"]["type"],
                item["error"]["reason"],
                extra=extra,
                caused_by=item["error"].get("caused_by"),
            )
        status = item.pop("status")
        return status, item

    async def get_doc(self, req: Request) -> Result:
        indices = self.store.resolve_read(req.args["index"])
        for index in indices:
            doc = index.docs.get(req.args["id"])
            if doc is not None:
                return 200, {
                    "_index": index.name,
                    "_id": req.args["id"],
                    "_version": doc.version,
                    "_seq_no": doc.seq_no,
                    "_primary_term": 1,
                    "found": True,
                    "_source": doc.source,
                }
        name = indices[0].name if indices else req.args["index"]
        return 404, {"_index": name, "_id": req.args["id"], "found": False}

    async def delete_doc(self, req: Request) -> Result:
        body = orjson.dumps({"delete": {"_index": req.args["index"], "_id": req.args["id"]}})
        result = execute_bulk(
            self.store, body + b"\n", None, self.server.faults, self.server.stats, False
        )
        item = result["items"][0]["delete"]
        return item.pop("status"), item

    # -- search ---------------------------------------------------------------------------
    def _targets(self, req: Request) -> list[Any]:
        expression = req.args.get("index", "*")
        ignore = req.params.get("ignore_unavailable") == "true"
        return self.store.resolve_read(expression, ignore_unavailable=ignore)

    async def search(self, req: Request) -> Result:
        body = req.json()
        indices = [] if "pit" in body else self._targets(req)
        return 200, search.search(self.store, indices, body, req.params)

    async def count(self, req: Request) -> Result:
        body = req.json()
        if "q" in req.params:
            field, _, value = req.params["q"].partition(":")
            body = {"query": {"match": {field: value}}}
        return 200, search.count(self._targets(req), body)

    async def refresh(self, req: Request) -> Result:
        indices = self._targets(req)
        total = 0
        for index in indices:
            index.refresh()
            total += 1 + index.replicas
        return 200, {"_shards": {"total": total, "successful": len(indices), "failed": 0}}

    async def open_pit(self, req: Request) -> Result:
        if "keep_alive" not in req.params:
            raise EsError(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: [keep_alive] is not specified;",
            )
        indices = self._targets(req)
        pit_id = search.open_pit(self.store, indices)
        n = len(indices)
        return 200, {
            "id": pit_id,
            "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0},
        }

    async def close_pit(self, req: Request) -> Result:
        pit_id = str(req.json().get("id"))
        found = self.store.pits.pop(pit_id, None) is not None
        return (200 if found else 404), {"succeeded": found, "num_freed": 1 if found else 0}

    # -- indices --------------------------------------------------------------------------
    async def create_index(self, req: Request) -> Result:
        name = req.args["index"]
        if name in self.store.indices or name in self.store.data_streams:
            index = self.store.indices.get(name)
            raise EsError(
                400,
                "resource_already_exists_exception",
                f"index [{name}/{index.uuid if index else '_na_'}] already exists",
                extra={"index_uuid": index.uuid if index else "_na_", "index": name},
            )
        from .store import validate_index_name

        validate_index_name(name)
        match = self.store.matching_template(name)
        if match is not None and "data_stream" in match[1]:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"cannot create index with name [{name}], because it matches with "
                f"template [{match[0]}] that creates data streams only, use create "
                "data stream api instead",
            )
        self.store.create_index(name, match[1] if match else None, req.json())
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}

    async def get_index(self, req: Request) -> Result:
        out = {}
        for index in self.store.resolve_read(req.args["index"]):
            settings = dict(index.settings)
            settings.setdefault("index.number_of_shards", "1")
            settings.setdefault("index.number_of_replicas", "1")
            settings["index.uuid"] = index.uuid
            settings["index.provided_name"] = index.name
            settings["index.creation_date"] = str(index.created_ms)
            entry: dict[str, Any] = {
                "aliases": {},
                "mappings": index.mappings.to_es(),
                "settings": nest_settings(settings),
            }
            if index.data_stream:
                entry["data_stream"] = index.data_stream
            out[index.name] = entry
        return 200, out

    async def head_index(self, req: Request) -> Result:
        try:
            self.store.resolve_read(req.args["index"])
        except EsError:
            return 404, None
        return 200, None

    async def delete_index(self, req: Request) -> Result:
        self.store.delete_index(req.args["index"])
        return 200, {"acknowledged": True}

    async def get_mapping(self, req: Request) -> Result:
        return 200, {i.name: {"mappings": i.mappings.to_es()} for i in self._targets(req)}

    # -- templates, ILM, data streams -----------------------------------------------------
    async def put_template(self, req: Request) -> Result:
        self.store.put_template(req.args["name"], req.json(), req.params.get("create") == "true")
        return 200, {"acknowledged": True}

    def _templates(self, name: str | None) -> list[tuple[str, dict[str, Any]]]:
        if name is None:
            return list(self.store.templates.items())
        names = name.split(",")
        return [
            (n, t)
            for n, t in self.store.templates.items()
            if any(fnmatch.fnmatchcase(n, p) for p in names)
        ]

    async def get_template(self, req: Request) -> Result:
        found = self._templates(req.args.get("name"))
        if not found and req.args.get("name") and "*" not in req.args["name"]:
            raise EsError(
                404,
                "resource_not_found_exception",
                f"index template matching [{req.args['name']}] not found",
            )
        items = []
        for n, t in found:
            tpl = dict(t)
            tpl.setdefault("composed_of", [])
            items.append({"name": n, "index_template": tpl})
        return 200, {"index_templates": items}

    async def head_template(self, req: Request) -> Result:
        return (200 if self._templates(req.args["name"]) else 404), None

    async def delete_template(self, req: Request) -> Result:
        found = self._templates(req.args["name"])
        if not found:
            raise EsError(
                404, "resource_not_found_exception", f"index_template [{req.args['name']}] missing"
            )
        for n, _ in found:
            users = [ds.name for ds in self.store.data_streams.values() if ds.template == n]
            if users:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"unable to remove composable templates [{n}] as they are in use "
                    f"by a data streams [{', '.join(users)}]",
                )
            del self.store.templates[n]
        return 200, {"acknowledged": True}

    async def put_component(self, req: Request) -> Result:
        body = req.json()
        if "template" not in body:
            raise EsError(400, "x_content_parse_exception", "[1:2] Required [template]")
        self.store.components[req.args["name"]] = body
        return 200, {"acknowledged": True}

    async def get_component(self, req: Request) -> Result:
        name = req.args.get("name")
        items = [
            {"name": n, "component_template": c}
            for n, c in self.store.components.items()
            if name is None or any(fnmatch.fnmatchcase(n, p) for p in name.split(","))
        ]
        if name and not items and "*" not in name:
            raise EsError(
                404,
                "resource_not_found_exception",
                f"component template matching [{name}] not found",
            )
        return 200, {"component_templates": items}

    async def delete_component(self, req: Request) -> Result:
        if self.store.components.pop(req.args["name"], None) is None:
            raise EsError(
                404,
                "resource_not_found_exception",
                f"component template matching [{req.args['name']}] not found",
            )
        return 200, {"acknowledged": True}

    async def put_pipeline(self, req: Request) -> Result:
        ingest.put_pipeline(self.store, req.args["id"], req.json())
        return 200, {"acknowledged": True}

    async def get_pipeline(self, req: Request) -> Result:
        found = ingest.get_pipelines(self.store, req.args.get("id"))
        # Nothing found: 404 with an empty object (GetPipelineResponse.status).
        return (200 if found else 404), found

    async def delete_pipeline(self, req: Request) -> Result:
        ingest.delete_pipelines(self.store, req.args["id"])
        return 200, {"acknowledged": True}

    async def put_ilm(self, req: Request) -> Result:
        body = req.json()
        if "policy" not in body:
            raise EsError(400, "x_content_parse_exception", "[1:2] Required [policy]")
        name = req.args["name"]
        previous = self.store.ilm_policies.get(name)
        self.store.ilm_policies[name] = {
            "version": (previous["version"] + 1) if previous else 1,
            "modified_date": "2024-01-01T00:00:00.000Z",
            "policy": body["policy"],
        }
        return 200, {"acknowledged": True}

    async def get_ilm(self, req: Request) -> Result:
        name = req.args.get("name")
        if name is None:
            return 200, dict(self.store.ilm_policies)
        out = {
            n: dict(p, in_use_by={"indices": [], "data_streams": [], "composable_templates": []})
            for n, p in self.store.ilm_policies.items()
            if any(fnmatch.fnmatchcase(n, q) for q in name.split(","))
        }
        if not out:
            raise EsError(
                404, "resource_not_found_exception", f"Lifecycle policy not found: [{name}]"
            )
        return 200, out

    async def delete_ilm(self, req: Request) -> Result:
        if self.store.ilm_policies.pop(req.args["name"], None) is None:
            raise EsError(
                404,
                "resource_not_found_exception",
                f"Lifecycle policy not found: {req.args['name']}",
            )
        return 200, {"acknowledged": True}

    async def put_data_stream(self, req: Request) -> Result:
        name = req.args["name"]
        if name in self.store.data_streams:
            raise EsError(
                400, "resource_already_exists_exception", f"data_stream [{name}] already exists"
            )
        self.store.create_data_stream(name)
        return 200, {"acknowledged": True}

    async def get_data_stream(self, req: Request) -> Result:
        name = req.args.get("name", "*")
        out = []
        for part in name.split(","):
            matched = [
                ds for n, ds in self.store.data_streams.items() if fnmatch.fnmatchcase(n, part)
            ]
            if not matched and "*" not in part:
                raise index_not_found(part)
            out += matched
        return 200, {"data_streams": [self._ds_json(ds) for ds in out]}

    def _ds_json(self, ds: Any) -> dict[str, Any]:
        indices = [self.store.indices[n] for n in ds.indices if n in self.store.indices]
        tpl = self.store.templates.get(ds.template, {})
        _, settings = self.store.resolve_template(tpl) if tpl else (None, {})
        policy = settings.get("index.lifecycle.name")
        managed = "Index Lifecycle Management" if policy else "Unmanaged"
        entry: dict[str, Any] = {
            "name": ds.name,
            "timestamp_field": {"name": "@timestamp"},
            "indices": [
                {
                    "index_name": i.name,
                    "index_uuid": i.uuid,
                    "prefer_ilm": True,
                    **({"ilm_policy": policy} if policy else {}),
                    "managed_by": managed,
                }
                for i in indices
            ],
            "generation": ds.generation,
            "status": "YELLOW" if any(i.replicas for i in indices) else "GREEN",
            "template": ds.template,
            "next_generation_managed_by": managed,
            "prefer_ilm": True,
            **({"ilm_policy": policy} if policy else {}),
            "hidden": ds.hidden,
            "system": False,
            "allow_custom_routing": False,
            "replicated": False,
            "rollover_on_write": False,
        }
        if self.server.major >= 9:
            entry["index_mode"] = "standard"
            failure_indices = [
                self.store.indices[n] for n in ds.failure_indices if n in self.store.indices
            ]
            # rollover_on_write: the failure store has no write index yet; the first failure
            # creates one (a lazy rollover).
            entry["failure_store"] = {
                "enabled": ds.failure_store,
                "rollover_on_write": not failure_indices,
                "indices": [
                    {
                        "index_name": i.name,
                        "index_uuid": i.uuid,
                        "prefer_ilm": True,
                        **({"ilm_policy": policy} if policy else {}),
                        "managed_by": managed,
                    }
                    for i in failure_indices
                ],
            }
        return entry

    async def rollover(self, req: Request) -> Result:
        flags = ("lazy", "dry_run")
        if req.json().get("conditions") or any(req.params.get(f) in ("", "true") for f in flags):
            # Not modelled: the shipper never rolls over; tests roll over unconditionally.
            raise EsError(
                400,
                "illegal_argument_exception",
                "the test server supports only unconditional rollover (no lazy, no dry_run)",
            )
        old, new = self.store.rollover(req.args["index"])
        # RolloverResponse: the acknowledged fields first, then the rollover's own.
        return 200, {
            "acknowledged": True,
            "shards_acknowledged": True,
            "old_index": old,
            "new_index": new,
            "rolled_over": True,
            "dry_run": False,
            "lazy": False,
            "conditions": {},
        }

    async def resolve_index(self, req: Request) -> Result:
        """GET /_resolve/index with the default expand_wildcards=open (hidden ones left out)."""
        patterns = req.args["name"].split(",")

        def wanted(name: str) -> bool:
            return any(fnmatch.fnmatchcase(name, p) for p in patterns)

        indices = [
            {"name": n, "attributes": ["open"]}
            for n in sorted(self.store.indices)
            if wanted(n) and not n.startswith(".")
        ]
        streams = [
            {"name": ds.name, "backing_indices": list(ds.indices), "timestamp_field": "@timestamp"}
            for n, ds in sorted(self.store.data_streams.items())
            if wanted(n) and not ds.hidden
        ]
        return 200, {"indices": indices, "aliases": [], "data_streams": streams}

    async def delete_data_stream(self, req: Request) -> Result:
        self.store.delete_data_stream(req.args["name"])
        return 200, {"acknowledged": True}

    # -- test control (a path real Elasticsearch never has) -------------------------------
    async def test_faults(self, req: Request) -> Result:
        spec = req.json()
        self.server.faults.apply(spec)
        if "refuse_connections_s" in spec:
            self.server.refuse_connections(float(spec["refuse_connections_s"]), delay_s=0.05)
        return 200, {"acknowledged": True}

    async def test_stats(self, req: Request) -> Result:
        body = self.server.stats.as_json()
        body["doc_counts"] = {n: i.doc_count() for n, i in self.store.indices.items()}
        return 200, body

    async def test_reset(self, req: Request) -> Result:
        self.server.faults.reset()
        self.server.stats = Stats()
        return 200, {"acknowledged": True}


def _seconds(text: str) -> float:
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


class EsTestServer:
    """An Elasticsearch-compatible server for tests; see the package README in __init__."""

    is_real = False

    def __init__(
        self,
        major: int = 9,
        *,
        count_only: bool = False,
        count_containers: bool = False,
        detect_duplicates: bool = True,
        users: dict[str, str] | None = None,
        api_keys: dict[str, str] | None = None,
        bearer_tokens: set[str] | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        tls_client_ca: str | None = None,
        compress_responses: bool | None = None,
        builtin_logs_template: bool = True,
        cluster_name: str = "docker-cluster",
    ) -> None:
        if major not in VERSIONS:
            raise ValueError(f"major must be one of {sorted(VERSIONS)}")
        self.major = major
        self.version = dict(VERSIONS[major])
        self.count_only = count_only
        self.count_containers = count_containers
        self.detect_duplicates = detect_duplicates
        self.users = dict(users or {})
        self.api_keys = dict(api_keys or {})
        self.bearer_tokens = set(bearer_tokens or ())
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_ca = tls_ca  # only for shipper_config(): the CA that signed tls_cert
        # Set: clients must present a certificate this CA signed, as Elasticsearch with
        # xpack.security.http.ssl.client_authentication: required (the TLS handshake fails
        # without one, before any HTTP).
        self.tls_client_ca = tls_client_ca
        # http.compression defaults to true, but to false when TLS is on (ES's own default).
        self.compress_responses = (
            compress_responses if compress_responses is not None else tls_cert is None
        )
        self.store = Store(major, builtin_logs_template=builtin_logs_template)
        self.faults = Faults()
        self.stats = Stats()
        self.cluster_name = cluster_name
        self.cluster_uuid = new_uuid()
        self.node_name = "es-test-" + new_uuid()[:6].lower()
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._app = EsApp(self)
        self._refusal: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self, port: int | None = 0, host: str = "127.0.0.1") -> str:
        """Listen on ``port`` (0 picks a free one); keeps all data across stop()/start()."""
        if self._runner is not None:
            return self.url
        self.host = host
        # auto_decompress off: bodies are inflated by encoding.inflate, the way ES's Netty
        # pipeline does it (limits on the inflated size, a corrupt body closes the connection).
        app = web.Application(
            client_max_size=2**40,
            handler_args={"max_field_size": 65536, "auto_decompress": False},
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        ssl_context = None
        if self.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca is not None:
                ssl_context.verify_mode = ssl.CERT_REQUIRED
                ssl_context.load_verify_locations(cafile=self.tls_client_ca)
        site = web.TCPSite(
            runner,
            host,
            port if port is not None else self.port or 0,
            ssl_context=ssl_context,
            reuse_address=True,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self._runner = runner
        return self.url

    async def stop(self) -> None:
        """Close the listener and every connection: clients then see 'connection refused'."""
        if self._refusal is not None and self._refusal is not asyncio.current_task():
            self._refusal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refusal
            self._refusal = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self) -> str:
        await self.stop()
        return await self.start(self.port)

    def refuse_connections(self, seconds: float, delay_s: float = 0.0) -> None:
        """Stop listening for ``seconds`` (connections refused), then listen on the same port."""

        async def outage() -> None:
            await asyncio.sleep(delay_s)
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.cleanup()
            await asyncio.sleep(seconds)
            await self.start(self.port, self.host)
            self._refusal = None

        self._refusal = asyncio.get_running_loop().create_task(outage())

    # -- in-process helpers ---------------------------------------------------------------
    def documents(self, index_or_ds: str) -> list[dict[str, Any]]:
        """Every stored document (refreshed or not) as ``{"_index", "_id", "_source"}``."""
        out = []
        for index in self.store.resolve_read(index_or_ds):
            for doc_id, doc in index.docs.items():
                out.append({"_index": index.name, "_id": doc_id, "_source": doc.source})
        return out

    def documents_with_pipelines(self, index_or_ds: str) -> list[dict[str, Any]]:
        """`documents()` with `_pipeline`: the ingest pipeline each write named (or None).
        The server runs no processors (ingest.py), so this is how tests see pipelines."""
        out = []
        for index in self.store.resolve_read(index_or_ds):
            for doc_id, doc in index.docs.items():
                out.append({"_index": index.name, "_id": doc_id, "_pipeline": doc.pipeline})
        return out

    def doc_count(self, index_or_ds: str) -> int:
        return sum(i.doc_count() for i in self.store.resolve_read(index_or_ds))

    def probe(self, **kwargs: Any) -> Any:
        from .probe import Probe

        if self.tls_ca is not None:
            kwargs.setdefault("ca_file", self.tls_ca)
        if self.users and "basic_auth" not in kwargs and "api_key" not in kwargs:
            kwargs["basic_auth"] = next(iter(self.users.items()))
        return Probe(self.url, **kwargs)

    def shipper_config(self) -> dict[str, Any]:
        """The shipper's ``elasticsearch:`` section for this server: hosts, the first user's
        credentials when users are configured, and the CA (``tls_ca``) for https; with https and
        no ``tls_ca`` certificates cannot be checked, so ``verify_certs`` is off."""
        config: dict[str, Any] = {"hosts": [self.url]}
        if self.users:
            config["username"], config["password"] = next(iter(self.users.items()))
        elif self.api_keys:
            key_id, key = next(iter(self.api_keys.items()))
            config["api_key"] = base64.b64encode(f"{key_id}:{key}".encode()).decode()
        if self.tls_cert:
            if self.tls_ca is not None:
                config["ca_certs"] = self.tls_ca
            else:
                config["verify_certs"] = False
        return config

    # -- HTTP -----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        uri = (
            request.rel_url.raw_path_qs
            if hasattr(request.rel_url, "raw_path_qs")
            else str(request.rel_url)
        )
        stats.requests[f"{request.method} {request.path}"] += 1
        stats.last_headers = {str(k): v for k, v in request.headers.items()}
        faults = self.faults
        length = request.content_length
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        compressed = encoding_.is_compressed(encoding)
        if not compressed and length is not None and length > faults.max_content_length:
            await request.read()  # drain, so the client reads the 413 instead of a reset
            stats.bytes_received += length
            return self._too_large()
        # aiohttp's own inflating is off (see start()): the body is what crossed the wire.
        body = await request.read()
        stats.bytes_received += len(body)
        if compressed:
            stats.gzip_requests += 1
            try:
                body = encoding_.inflate(body, encoding, faults.max_content_length)
            except encoding_.CorruptBody:
                return self._drop_connection(request)
        if len(body) > faults.max_content_length:
            return self._too_large()
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        accept = media.parse(request.headers.get("Accept"))
        content_type = media.parse(request.headers.get("Content-Type"))
        try:
            has_content = bool(body)
            media.check_content_type(content_type, has_content)
            media.check_compatibility(self.major, accept, content_type, has_content)
        except (EsError, PlainError) as exc:
            return self._respond(request, exc.status, exc.body(), None, error=True)
        ctype = media.response_content_type(accept, content_type)
        is_test_path = request.path.startswith("/_test/")
        try:
            if not is_test_path:
                self._authenticate(request, uri)
            failure = (
                None
                if is_test_path
                else faults.take_request_failure(request.path.endswith("/_bulk"))
            )
            if failure is not None:
                return self._injected_failure(request, failure, len(body), ctype)
            handler, args = self._app.resolve(request.method, request.path, uri)
            params = {k: v for k, v in request.query.items()}
            status, result = await handler(
                Request(request.method, request.path, params, body, args, request.headers)
            )
        except (EsError, PlainError) as exc:
            headers = None
            if isinstance(exc, EsError) and exc.status == 401:
                headers = exc.headers
            return self._respond(request, exc.status, exc.body(), ctype, headers, error=True)
        return self._respond(request, status, result, ctype)

    def _drop_connection(self, request: web.Request) -> web.StreamResponse:
        # AbstractHttpServerTransport.onException: the channel is closed, nothing is written.
        transport = request.transport
        if transport is not None:
            transport.close()
        response = web.Response(status=400)
        response.force_close()
        return response

    def _too_large(self) -> web.Response:
        # Netty's HttpObjectAggregator answers before ES sees the request: empty body, no
        # X-Elastic-Product header, connection closed.
        response = web.Response(status=413)
        response.force_close()
        return response

    def _injected_failure(
        self, request: web.Request, status: int, size: int, ctype: str
    ) -> web.StreamResponse:
        if status == 429:
            err = EsError(429, "es_rejected_execution_exception", rejected_request_reason(size))
            return self._respond(request, 429, err.body(), ctype, error=True)
        if status == 503:
            err = EsError(
                503,
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];",
            )
            return self._respond(request, 503, err.body(), ctype, error=True)
        if status in (502, 504):
            # Gateways in front of ES answer these, not ES: HTML body, no product header.
            text = {502: "502 Bad Gateway", 504: "504 Gateway Time-out"}[status]
            html = f"<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n"
            return web.Response(status=status, text=html, content_type="text/html")
        err = EsError(status, "exception", f"injected failure with status [{status}]")
        return self._respond(request, status, err.body(), ctype, error=True)

    def _authenticate(self, request: web.Request, uri: str) -> None:
        if not self.users and not self.api_keys and not self.bearer_tokens:
            return
        header = request.headers.get("Authorization")
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE}

        def fail(reason: str) -> EsError:
            return EsError(401, "security_exception", reason, headers=headers)

        if not header:
            raise fail(f"missing authentication credentials for REST request [{uri}]")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        left, sep, right = decoded.partition(":")
        if (
            scheme == "bearer"
            and not self.faults.wrong_password
            and value.strip() in self.bearer_tokens
        ):
            return
        if scheme == "basic":
            if not sep:
                raise fail("invalid basic authentication header value")
            if self.faults.wrong_password or self.users.get(left) != right:
                raise fail(f"unable to authenticate user [{left}] for REST request [{uri}]")
            return
        if (
            scheme == "apikey"
            and sep
            and not self.faults.wrong_password
            and self.api_keys.get(left) == right
        ):
            return
        raise fail(
            "unable to authenticate with provided credentials and anonymous access is not "
            "allowed for this request"
        )

    def _respond(
        self,
        request: web.Request,
        status: int,
        body: Any,
        ctype: str | None,
        headers: dict[str, list[str]] | None = None,
        *,
        error: bool = False,
    ) -> web.StreamResponse:
        """``error``: an exception's body, which filter_path never applies to (the REST
        channel's newErrorBuilder disables filtering), so the type and reason always arrive."""
        response = web.Response(status=status)
        filtering = "filter_path" in request.query and not error
        response.headers["X-Elastic-Product"] = "Elasticsearch"
        for name, values in (headers or {}).items():
            for value in values:
                response.headers.add(name, value)
        if body is None:
            return response
        if isinstance(body, Raw):
            payload: bytes = body
        elif isinstance(body, bytes):
            if filtering:
                body = orjson.dumps(filter_path(orjson.loads(body), request.query["filter_path"]))
            payload = body
        else:
            if filtering:
                body = filter_path(body, request.query["filter_path"])
            option = orjson.OPT_INDENT_2 if request.query.get("pretty") in ("", "true") else 0
            payload = orjson.dumps(body, option=option)
        response.headers["Content-Type"] = ctype or "application/json"
        if request.method == "HEAD":
            response.headers["Content-Length"] = str(len(payload))
            return response
        coding = None
        if self.compress_responses:
            coding = encoding_.response_coding(request.headers.get("Accept-Encoding", ""))
        if coding is None:
            response.body = payload
        else:
            response.body = encoding_.compress_response(payload, coding)
            response.headers["Content-Encoding"] = coding
        return response
