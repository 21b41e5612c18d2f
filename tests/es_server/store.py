"""Cluster state: indices, data streams, composable/component templates, ILM policies.

A single-node cluster, like a developer's ES container: every index has one primary shard and the
default ``number_of_replicas: 1``, so indices are yellow and write results report
``_shards: {total: 2, successful: 1}`` unless a template sets replicas to 0.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import EsError, illegal_argument, index_not_found, java_list
from .mapping import Mappings


def new_uuid() -> str:
    """22 url-safe base64 characters, the form of ES index and cluster UUIDs."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


_id_counter = itertools.count()


def new_doc_id() -> str:
    """20 url-safe base64 characters like ES's time-based auto ids (15 bytes: time + seq + rnd)."""
    raw = (
        time.time_ns().to_bytes(8, "big")[2:]
        + (next(_id_counter) & 0xFFFFFF).to_bytes(3, "big")
        + os.urandom(6)
    )
    return base64.urlsafe_b64encode(raw).decode()


@dataclass
class Doc:
    source: dict[str, Any]
    seq_no: int
    version: int = 1
    pipeline: str | None = None  # the ingest pipeline the write named (not run: ingest.py)


@dataclass
class Postings:
    """The inverted index of one field: which documents hold each comparable value.

    Real Elasticsearch answers term queries from an inverted index; walking every source on
    every poll made the tests' polling cost grow with the index and compete with the shipper
    it measures (the server shares the tests' event loop). ``by_id`` also keeps each current
    document's source, so a matcher can tell a current version (cached values) from an older
    one held by a point in time (values computed afresh).
    """

    comparables: Callable[[dict[str, Any]], list[Any]]
    by_value: dict[Any, set[str]] = field(default_factory=dict)
    by_id: dict[str, tuple[dict[str, Any], list[Any]]] = field(default_factory=dict)

    def add(self, doc_id: str, source: dict[str, Any]) -> None:
        values = self.comparables(source)
        self.by_id[doc_id] = (source, values)
        for value in values:
            self.by_value.setdefault(value, set()).add(doc_id)

    def discard(self, doc_id: str) -> None:
        entry = self.by_id.pop(doc_id, None)
        if entry is None:
            return
        for value in entry[1]:
            holders = self.by_value.get(value)
            if holders is not None:
                holders.discard(doc_id)
                if not holders:
                    del self.by_value[value]

    def values_of(self, source: dict[str, Any], doc_id: str) -> list[Any]:
        """The document's values, cached when ``source`` is the stored version (a point in
        time may hold an older one)."""
        entry = self.by_id.get(doc_id)
        if entry is not None and entry[0] is source:
            return entry[1]
        return self.comparables(source)

    def ids_holding(self, values: set[Any]) -> set[str]:
        found: set[str] = set()
        for value in values:
            found |= self.by_value.get(value, set())
        return found


@dataclass
class Index:
    name: str
    uuid: str
    mappings: Mappings
    settings: dict[str, Any]
    data_stream: str | None = None
    docs: dict[str, Doc] = field(default_factory=dict)
    seq_no: int = 0
    refreshed_seq_no: int = 0
    last_refresh: float = field(default_factory=time.monotonic)
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    # (field, path, type) -> the inverted index of that field, built by the first term query
    postings: dict[tuple[str, str, str], Postings] = field(default_factory=dict)
    # The searchable version of each document overwritten or deleted since the last refresh:
    # searches see the index as of the last refresh, so they still find it.
    superseded: dict[str, Doc] = field(default_factory=dict)
    # count-only mode: no sources, only counts and (optionally) ids for duplicate detection.
    count: int = 0
    ids: set[str] = field(default_factory=set)

    @property
    def replicas(self) -> int:
        return int(self.settings.get("index.number_of_replicas", 1))

    @property
    def shards_info(self) -> dict[str, int]:
        return {"total": 1 + self.replicas, "successful": 1, "failed": 0}

    @property
    def default_pipeline(self) -> str | None:
        name = self.settings.get("index.default_pipeline")
        return None if name in (None, "_none") else str(name)

    @property
    def ignore_malformed(self) -> bool:
        return str(self.settings.get("index.mapping.ignore_malformed", "false")).lower() == "true"

    def put(self, doc_id: str, doc: Doc) -> None:
        """Stores a document version: every write goes through here, so postings stay exact."""
        self._supersede(doc_id)
        # Re-inserting moves an updated doc to the end, which is where ES's _doc order puts it
        # too: the dict's order is the order of seq_no.
        self.docs.pop(doc_id, None)
        self.docs[doc_id] = doc
        for postings in self.postings.values():
            postings.discard(doc_id)
            postings.add(doc_id, doc.source)

    def remove(self, doc_id: str) -> Doc | None:
        self._supersede(doc_id)
        for postings in self.postings.values():
            postings.discard(doc_id)
        return self.docs.pop(doc_id, None)

    def _supersede(self, doc_id: str) -> None:
        current = self.docs.get(doc_id)
        if current is not None and current.seq_no < self.refreshed_seq_no:
            self.superseded.setdefault(doc_id, current)

    def postings_for(
        self, key: tuple[str, str, str], comparables: Callable[[dict[str, Any]], list[Any]]
    ) -> Postings:
        """The postings of one field, built from every stored document on first use."""
        postings = self.postings.get(key)
        if postings is None:
            postings = self.postings[key] = Postings(comparables)
            for doc_id, doc in self.docs.items():
                postings.add(doc_id, doc.source)
        return postings

    def visible_docs_among(self, doc_ids: set[str]) -> list[tuple[str, Doc]]:
        """visible_docs() narrowed to ``doc_ids`` (postings hold current versions, so every
        superseded one is kept for the query to decide), in the same (seq_no) order."""
        limit = self.refreshed_seq_no
        found = [
            (i, d) for i in doc_ids if (d := self.docs.get(i)) is not None and d.seq_no < limit
        ]
        found.extend(self.superseded.items())
        return sorted(found, key=lambda entry: entry[1].seq_no)

    def refresh(self) -> None:
        self.refreshed_seq_no = self.seq_no
        self.superseded.clear()
        self.last_refresh = time.monotonic()

    def maybe_auto_refresh(self) -> None:
        # ES refreshes every index.refresh_interval (1s); a search sees older writes only.
        interval = _parse_interval(self.settings.get("index.refresh_interval", "1s"))
        if interval is not None and time.monotonic() - self.last_refresh >= interval:
            self.refresh()

    def visible_docs(self) -> list[tuple[str, Doc]]:
        limit = self.refreshed_seq_no
        visible = [(i, d) for i, d in self.docs.items() if d.seq_no < limit]
        if not self.superseded:
            return visible
        return sorted([*visible, *self.superseded.items()], key=lambda entry: entry[1].seq_no)

    def doc_count(self) -> int:
        return self.count if not self.docs and self.count else len(self.docs)


def _parse_interval(value: Any) -> float | None:
    text = str(value)
    if text == "-1":
        return None
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


@dataclass
class DataStream:
    name: str
    template: str
    indices: list[str]
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    generation: int = 1
    hidden: bool = False
    # data_stream_options.failure_store.enabled, taken from the template once, when the
    # stream is created (failure store reference: "Set up for new data streams").
    failure_store: bool = False
    # Failure indices, created lazily by the first failure they keep.
    failure_indices: list[str] = field(default_factory=list)


# The failure store's fixed mapping (DataStreamFailureStoreDefinition): the template's
# mappings never apply to failure indices, and `document.source` is unmapped.
FAILURE_STORE_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "_routing": {"required": False},
    "properties": {
        "@timestamp": {"type": "date", "ignore_malformed": False},
        "document": {
            "properties": {
                "id": {"type": "keyword"},
                "routing": {"type": "keyword"},
                "index": {"type": "keyword"},
            }
        },
        "error": {
            "properties": {
                "message": {"type": "match_only_text"},
                "stack_trace": {"type": "text"},
                "type": {"type": "keyword"},
                "pipeline": {"type": "keyword"},
                "pipeline_trace": {"type": "keyword"},
                "processor_tag": {"type": "keyword"},
                "processor_type": {"type": "keyword"},
            }
        },
    },
}
# Template settings a failure index never takes (DataStreamFailureStoreDefinition.
# UNSUPPORTED_SETTINGS): pipelines and time series settings are for backing indices only.
FAILURE_STORE_UNSUPPORTED_SETTINGS = frozenset(
    {
        "index.default_pipeline",
        "index.final_pipeline",
        "index.time_series.start_time",
        "index.time_series.end_time",
        "index.routing_path",
        "index.mode",
    }
)
FAILURES_SELECTOR = "::failures"
DATA_SELECTOR = "::data"


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_settings(value, full + "."))
        else:
            out[full] = value
    return {(k if k.startswith("index.") else f"index.{k}"): v for k, v in out.items()}


def nest_settings(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = (
            value
            if isinstance(value, (str, list))
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
    return out


def patterns_overlap(a: str, b: str) -> bool:
    """Whether two simple ``*`` globs can match a common name (ES intersects their automata)."""

    def match(p: str, q: str) -> bool:
        if not p:
            return all(c == "*" for c in q)
        if not q:
            return all(c == "*" for c in p)
        if p[0] == "*":
            return match(p[1:], q) or match(p, q[1:])
        if q[0] == "*":
            return match(q[1:], p) or match(q, p[1:])
        return p[0] == q[0] and match(p[1:], q[1:])

    return match(a, b)


def builtin_templates(major: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The x-pack ``logs`` template and the components it uses, trimmed to what shapes documents."""
    version = 15 if major == 8 else 16
    meta = {"managed": True}
    components = {
        "logs@mappings": {
            "template": {
                "mappings": {
                    "date_detection": False,
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "data_stream.type": {"type": "constant_keyword", "value": "logs"},
                        "data_stream.dataset": {"type": "constant_keyword"},
                        "data_stream.namespace": {"type": "constant_keyword"},
                    },
                }
            },
            "version": version,
            "_meta": dict(
                meta, description="default mappings for the logs index template installed by x-pack"
            ),
        },
        "logs@settings": {
            "template": {
                "settings": {
                    "index": {
                        "lifecycle": {"name": "logs"},
                        "codec": "best_compression",
                        "mapping": {"ignore_malformed": True},
                        "default_pipeline": "logs@default-pipeline",
                    }
                }
            },
            "version": version,
            "_meta": dict(
                meta, description="default settings for the logs index template installed by x-pack"
            ),
        },
        "ecs@mappings": {
            "template": {
                "mappings": {
                    "dynamic_templates": [
                        {
                            "ecs_timestamp": {
                                "match": "@timestamp",
                                "mapping": {"type": "date", "ignore_malformed": False},
                            }
                        },
                        {
                            "ecs_message_match_only_text": {
                                "path_match": ["message", "*.message"],
                                "mapping": {"type": "match_only_text"},
                            }
                        },
                        {
                            "ecs_flattened": {
                                "path_match": ["*structured_data", "*exports", "*imports"],
                                "mapping": {"type": "flattened"},
                            }
                        },
                        {
                            "all_strings_to_keywords": {
                                "match_mapping_type": "string",
                                "mapping": {"type": "keyword", "ignore_above": 1024},
                            }
                        },
                    ]
                }
            },
            "version": version,
            "_meta": dict(meta, description="dynamic mappings based on ECS, installed by x-pack"),
        },
    }
    templates = {
        "logs": {
            "index_patterns": ["logs-*-*"],
            "composed_of": ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"],
            "priority": 100,
            "version": version,
            "_meta": dict(meta, description="default logs template installed by x-pack"),
            "data_stream": {"hidden": False, "allow_custom_routing": False},
            "allow_auto_create": True,
            "ignore_missing_component_templates": ["logs@custom"],
        }
    }
    return templates, components


class Store:
    def __init__(self, major: int, *, builtin_logs_template: bool = True) -> None:
        self.major = major
        self.indices: dict[str, Index] = {}
        self.data_streams: dict[str, DataStream] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.components: dict[str, dict[str, Any]] = {}
        self.ilm_policies: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}  # ingest pipelines by id
        self.pits: dict[str, list[tuple[str, list[tuple[str, Doc]]]]] = {}
        if builtin_logs_template:
            templates, components = builtin_templates(major)
            self.templates.update(templates)
            self.components.update(components)
            from .ingest import BUILTIN_PIPELINES

            self.pipelines.update(BUILTIN_PIPELINES)
            self.ilm_policies["logs"] = {
                "version": 1,
                "modified_date": "2024-01-01T00:00:00.000Z",
                "policy": {
                    "phases": {
                        "hot": {
                            "min_age": "0ms",
                            "actions": {
                                "rollover": {"max_age": "30d", "max_primary_shard_size": "50gb"}
                            },
                        }
                    },
                    "_meta": {
                        "description": "default policy for the logs index template installed by x-pack",
                        "managed": True,
                    },
                },
            }

    # -- templates ------------------------------------------------------------------------
    def put_template(self, name: str, body: dict[str, Any], create: bool = False) -> None:
        if create and name in self.templates:
            raise illegal_argument(f"index template [{name}] already exists")
        patterns = body.get("index_patterns")
        if patterns is None:
            raise illegal_argument("Required [index_patterns]")
        if isinstance(patterns, str):
            patterns = [patterns]
        body = dict(body, index_patterns=patterns)
        priority = int(body.get("priority") or 0)
        clashes: dict[str, list[str]] = {}
        for other_name, other in self.templates.items():
            if other_name == name or int(other.get("priority") or 0) != priority:
                continue
            if any(patterns_overlap(p, q) for p in patterns for q in other["index_patterns"]):
                clashes[other_name] = other["index_patterns"]
        if clashes:
            names = ",".join(clashes)
            detail = ",".join(f"{n} => {java_list(p)}" for n, p in clashes.items())
            raise illegal_argument(
                f"index template [{name}] has index patterns {java_list(patterns)} matching "
                f"patterns from existing templates [{names}] with patterns ({detail}) that have "
                f"the same priority [{priority}], multiple index templates may not match during "
                "index creation, please use a different priority"
            )
        ignore = set(body.get("ignore_missing_component_templates", []))
        missing = [
            c for c in body.get("composed_of", []) if c not in self.components and c not in ignore
        ]
        if missing:
            raise EsError(
                400,
                "invalid_index_template_exception",
                f"index_template [{name}] invalid, cause [index template [{name}] specifies "
                f"component templates {java_list(missing)} that do not exist]",
            )
        self.templates[name] = copy.deepcopy(body)

    def matching_template(self, index_name: str) -> tuple[str, dict[str, Any]] | None:
        best: tuple[str, dict[str, Any]] | None = None
        for name, tpl in self.templates.items():
            if not any(fnmatch.fnmatchcase(index_name, p) for p in tpl["index_patterns"]):
                continue
            if best is None or int(tpl.get("priority") or 0) > int(best[1].get("priority") or 0):
                best = (name, tpl)
        return best

    def failure_store_enabled(self, tpl: dict[str, Any]) -> bool:
        """data_stream_options.failure_store.enabled of a composable template: its component
        templates in order, then its own `template`, the last one that sets it wins (9.x only:
        8.17 has no failure store)."""
        if self.major < 9:
            return False
        enabled = False
        parts = [
            self.components[c]["template"]
            for c in tpl.get("composed_of", [])
            if c in self.components
        ]
        parts.append(tpl.get("template", {}))
        for part in parts:
            options = part.get("data_stream_options") or {}
            failure_store = options.get("failure_store") or {}
            if "enabled" in failure_store:
                enabled = bool(failure_store["enabled"])
        return enabled

    def resolve_template(self, tpl: dict[str, Any]) -> tuple[Mappings, dict[str, Any]]:
        mappings = Mappings()
        settings: dict[str, Any] = {}
        parts = [
            self.components[c]["template"]
            for c in tpl.get("composed_of", [])
            if c in self.components
        ]
        parts.append(tpl.get("template", {}))
        for part in parts:
            if "mappings" in part:
                mappings.merge(part["mappings"])
            if "settings" in part:
                settings.update(flatten_settings(part["settings"]))
        return mappings, settings

    # -- indices and data streams ---------------------------------------------------------
    def get_write_index(self, name: str, *, op_type: str, auto_create: bool = True) -> Index:
        """The index a write to ``name`` lands in, creating it (or a data stream) on demand."""
        ds = self.data_streams.get(name)
        if ds is not None:
            if op_type != "create":
                raise illegal_argument(
                    "only write ops with an op_type of create are allowed in data streams"
                )
            return self.indices[ds.indices[-1]]
        index = self.indices.get(name)
        if index is not None:
            return index
        validate_index_name(name)
        match = self.matching_template(name)
        if match is not None and "data_stream" in match[1]:
            if op_type != "create":
                raise illegal_argument(
                    "only write ops with an op_type of create are allowed in data streams"
                )
            return self.indices[self.create_data_stream(name, match).indices[-1]]
        if not auto_create:
            raise index_not_found(name)
        return self.create_index(name, match[1] if match else None)

    def create_index(
        self, name: str, template: dict[str, Any] | None, body: dict[str, Any] | None = None
    ) -> Index:
        mappings, settings = self.resolve_template(template) if template else (Mappings(), {})
        if body:
            if "mappings" in body:
                mappings.merge(body["mappings"])
            if "settings" in body:
                settings.update(flatten_settings(body["settings"]))
        index = Index(name=name, uuid=new_uuid(), mappings=mappings, settings=settings)
        self.indices[name] = index
        return index

    def create_data_stream(
        self,
        name: str,
        match: tuple[str, dict[str, Any]] | None = None,
        *,
        with_failure_index: bool = False,
    ) -> DataStream:
        """`with_failure_index`: created by a write bound for its failure store (a failure
        before the stream existed), which then starts with a failure index of generation 1
        beside the backing index (190_failure_store_redirection.yml, "Redirect ingest
        failure")."""
        if match is None:
            match = self.matching_template(name)
        if match is None or "data_stream" not in match[1]:
            raise illegal_argument(f"no matching index template found for data stream [{name}]")
        tpl_name, tpl = match
        backing = self._backing_index(name, 1, tpl)
        ds = DataStream(
            name=name,
            template=tpl_name,
            indices=[backing.name],
            hidden=bool(tpl["data_stream"].get("hidden", False)),
            failure_store=self.failure_store_enabled(tpl),
        )
        self.data_streams[name] = ds
        if with_failure_index:
            ds.failure_indices.append(self._failure_index(name, 1, tpl).name)
        return ds

    def failure_store_resolution(self, name: str) -> bool | None:
        """Whether a failure of a write to `name` goes to a failure store: True/False for a
        data stream (existing, or that a template would create), None for anything else
        (TransportBulkAction.resolveFailureStore). 8.x: always None (no failure store)."""
        if self.major < 9:
            return None
        ds = self.data_streams.get(name)
        if ds is not None:
            return ds.failure_store
        if name in self.indices:
            return None
        match = self.matching_template(name)
        if match is None or "data_stream" not in match[1]:
            return None
        return self.failure_store_enabled(match[1])

    def failure_write_index(self, ds: DataStream) -> Index:
        """The failure store's write index, created at the first failure: a lazy rollover of
        the failure store, so it takes the data stream's next generation (`.fs-<name>-
        <date>-000002` after the first backing index)."""
        if ds.failure_indices:
            return self.indices[ds.failure_indices[-1]]
        tpl = self.templates.get(ds.template, {})
        ds.generation += 1
        index = self._failure_index(ds.name, ds.generation, tpl)
        ds.failure_indices.append(index.name)
        return index

    def _failure_index(self, name: str, generation: int, tpl: dict[str, Any]) -> Index:
        _, settings = self.resolve_template(tpl) if tpl else (None, {})
        kept = {k: v for k, v in settings.items() if k not in FAILURE_STORE_UNSUPPORTED_SETTINGS}
        kept.update({"index.hidden": "true", "index.failure_store.version": "1"})
        mappings = Mappings()
        mappings.merge(FAILURE_STORE_MAPPING)
        day = time.strftime("%Y.%m.%d", time.gmtime())
        index = Index(
            name=f".fs-{name}-{day}-{generation:06d}",
            uuid=new_uuid(),
            mappings=mappings,
            settings=kept,
        )
        index.data_stream = name
        self.indices[index.name] = index
        return index

    def _backing_index(self, name: str, generation: int, tpl: dict[str, Any]) -> Index:
        # DataStream.getDefaultBackingIndexName: the date is the day the index is created.
        day = time.strftime("%Y.%m.%d", time.gmtime())
        index = self.create_index(f".ds-{name}-{day}-{generation:06d}", tpl)
        index.data_stream = name
        if index.mappings.field_type("@timestamp") is None:
            # ES adds this mapping itself when the template does not map @timestamp.
            index.mappings.merge({"properties": {"@timestamp": {"type": "date"}}})
        return index

    def rollover(self, target: str) -> tuple[str, str]:
        """Roll a data stream over to a new write index; returns (old, new) index names.

        The new backing index takes the mappings and settings of the template that matches the
        stream now (MetadataRolloverService uses the current template, not the original one).
        Documents stay where they are: an ``_id`` is unique per backing index only.
        """
        ds = self.data_streams.get(target)
        if ds is None:
            if target in self.indices:
                raise illegal_argument(
                    "rollover target is a [concrete index] but one of [alias,data_stream] is "
                    "required"
                )
            raise illegal_argument(f"rollover target [{target}] does not exist")
        match = self.matching_template(target)
        if match is None or "data_stream" not in match[1]:
            raise illegal_argument(f"no matching index template found for data stream [{target}]")
        old = ds.indices[-1]
        ds.generation += 1
        new = self._backing_index(target, ds.generation, match[1])
        ds.indices.append(new.name)
        return old, new.name

    def resolve_read(self, expression: str, *, ignore_unavailable: bool = False) -> list[Index]:
        """Concrete indices for a search target: names, data streams, wildcards, comma lists."""
        out: dict[str, Index] = {}
        for part in expression.split(","):
            part = part.strip()
            if part in ("", "_all", "*"):
                part = "*"
            # Index component selectors (8.19/9.1): `<stream>::failures` is the failure
            # store's indices, `<stream>::data` (the default) the backing indices.
            selector = DATA_SELECTOR
            for candidate in (FAILURES_SELECTOR, DATA_SELECTOR):
                if part.endswith(candidate):
                    part, selector = part[: -len(candidate)], candidate
            if "*" in part:
                for ds_name, ds in self.data_streams.items():
                    if fnmatch.fnmatchcase(ds_name, part) and not ds.hidden:
                        for n in self._component(ds, selector):
                            out[n] = self.indices[n]
                if selector == FAILURES_SELECTOR:
                    continue
                for name, index in self.indices.items():
                    # Hidden and dot indices (backing, failure) only by a pattern that starts
                    # with a dot, as IndexNameExpressionResolver matches them.
                    if fnmatch.fnmatchcase(name, part) and (
                        not name.startswith(".") or part.startswith(".")
                    ):
                        out[name] = index
                continue
            if part in self.data_streams:
                for n in self._component(self.data_streams[part], selector):
                    out[n] = self.indices[n]
            elif part in self.indices:
                out[part] = self.indices[part]
            elif not ignore_unavailable:
                raise index_not_found(part)
        return list(out.values())

    @staticmethod
    def _component(ds: DataStream, selector: str) -> list[str]:
        return ds.failure_indices if selector == FAILURES_SELECTOR else ds.indices

    def delete_index(self, expression: str) -> None:
        targets = []
        for part in expression.split(","):
            if part in self.data_streams:
                raise illegal_argument(
                    f"The provided expression [{part}] matches a data stream, specify the "
                    "corresponding concrete indices instead."
                )
            if "*" in part:
                targets += [
                    n
                    for n in self.indices
                    if fnmatch.fnmatchcase(n, part) and not n.startswith(".")
                ]
            elif part in self.indices:
                targets.append(part)
            else:
                raise index_not_found(part)
        for name in targets:
            index = self.indices.pop(name)
            if index.data_stream and index.data_stream in self.data_streams:
                ds = self.data_streams[index.data_stream]
                ds.indices = [i for i in ds.indices if i != name]

    def delete_data_stream(self, expression: str) -> None:
        names: list[str] = []
        for part in expression.split(","):
            if "*" in part:
                names += [n for n in self.data_streams if fnmatch.fnmatchcase(n, part)]
            elif part in self.data_streams:
                names.append(part)
            else:
                raise index_not_found(part)
        for name in names:
            ds = self.data_streams.pop(name)
            for index_name in ds.indices + ds.failure_indices:
                self.indices.pop(index_name, None)


def validate_index_name(name: str) -> None:
    def bad(why: str) -> EsError:
        return EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {why}",
            extra={"index_uuid": "_na_", "index": name},
        )

    if name != name.lower():
        raise bad("must be lowercase")
    if name[:1] in ("_", "-", "+"):
        raise bad("must not start with '_', '-', or '+'")
    for ch in ' "*\\<|,>/?':
        if ch in name:
            raise bad('must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?]')
    if name in (".", ".."):
        raise bad("must not be '.' or '..'")
    if len(name.encode()) > 255:
        raise bad("index name is too long, (" + str(len(name.encode())) + " > 255)")
