"""Mappings: template mappings, dynamic mapping and per-document type checks.

Fields live in a flat ``path -> definition`` dict (objects have ``type: object``; multi-fields such
as ``message.keyword`` carry ``_multi_of``) so a lookup is one dict access; the nested form that
``GET _mapping`` returns is rebuilt on demand. A document that fails adds no mapping, as in ES.

Error texts follow DocumentParser / FieldMapper in Elasticsearch 8.8+ (``document_parsing_exception``
with a ``[line:column]`` prefix, the column being the 1-based byte offset of the offending token).
"""

from __future__ import annotations

import copy
import fnmatch
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from . import dates
from .errors import cause

OBJECT_TYPES = {"object", "nested"}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
FLOAT_TYPES = {"double", "float", "half_float", "scaled_float"}
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES
DATE_TYPES = {"date", "date_nanos"}
STRING_TYPES = {"text", "keyword", "match_only_text", "wildcard", "constant_keyword", "version"}
# Types whose malformed values index.mapping.ignore_malformed can drop instead of rejecting.
MALFORMABLE = NUMERIC_TYPES | DATE_TYPES | {"ip", "boolean", "geo_point"}
_INTEGER_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-128, 127),
    "unsigned_long": (0, 2**64 - 1),
}


class DocError(Exception):
    """A document rejected by the mapper; ``raw_path`` locates the token for the [l:c] prefix."""

    def __init__(
        self,
        type_: str,
        reason: str,
        raw_path: tuple[str | int, ...] | None,
        caused_by: dict[str, Any] | None = None,
        *,
        at_end: bool = False,
        nested_location: bool = False,
    ) -> None:
        super().__init__(reason)
        self.type = type_
        self.reason = reason
        self.raw_path = raw_path
        self.caused_by = caused_by
        self.at_end = at_end
        # "Can't get text on a START_OBJECT at l:c" needs the location in the cause's text.
        self.nested_location = nested_location

    def render(self, raw: bytes) -> dict[str, Any]:
        line, col = locate(raw, self.raw_path, self.at_end)
        caused_by = self.caused_by
        if caused_by is not None and self.nested_location:
            caused_by = dict(caused_by, reason=f"{caused_by['reason']} at {line}:{col}")
        out = cause(self.type, f"[{line}:{col}] {self.reason}")
        if caused_by is not None:
            out["caused_by"] = caused_by
        return out


def expand_properties(props: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": {...}}`` in a template means ``{"a": {"properties": {"b": {...}}}}``."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        value = copy.deepcopy(value)
        if isinstance(value, dict) and "properties" in value:
            value["properties"] = expand_properties(value["properties"])
        parts = key.split(".")
        target = out
        for seg in parts[:-1]:
            node = target.setdefault(seg, {"properties": {}})
            target = node.setdefault("properties", {})
        if parts[-1] in target and "properties" in target[parts[-1]] and "properties" in value:
            target[parts[-1]]["properties"].update(value["properties"])
        else:
            target[parts[-1]] = value
    return out


def java_value(value: Any) -> str:
    """How Java's toString() prints a parsed JSON value in 'Preview of field's value'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_value(v) for v in value) + "]"
    return str(value)


class Mappings:
    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}
        self.dynamic: Any = True
        self.date_detection = True
        self.numeric_detection = False
        self.dynamic_templates: list[dict[str, Any]] = []
        self.meta: dict[str, Any] | None = None

    # -- building -------------------------------------------------------------------------
    def merge(self, mapping: dict[str, Any]) -> None:
        if "dynamic" in mapping:
            self.dynamic = mapping["dynamic"]
        if "date_detection" in mapping:
            self.date_detection = bool(mapping["date_detection"])
        if "numeric_detection" in mapping:
            self.numeric_detection = bool(mapping["numeric_detection"])
        if "_meta" in mapping:
            self.meta = mapping["_meta"]
        if "dynamic_templates" in mapping:
            # Later templates replace same-named entries, as template composition does.
            names = {next(iter(t)) for t in mapping["dynamic_templates"]}
            kept = [t for t in self.dynamic_templates if next(iter(t)) not in names]
            self.dynamic_templates = kept + copy.deepcopy(mapping["dynamic_templates"])
        self._add_properties("", expand_properties(mapping.get("properties", {})))

    def _add_properties(self, prefix: str, props: dict[str, Any]) -> None:
        for name, definition in props.items():
            path = f"{prefix}{name}"
            d = {k: v for k, v in definition.items() if k not in ("properties", "fields")}
            if "type" not in d:
                d["type"] = "object"
            existing = self.fields.get(path)
            if existing is not None and existing.get("type") == d["type"]:
                existing.update(d)
            else:
                self.fields[path] = d
            for sub, sub_def in definition.get("fields", {}).items():
                self.fields[f"{path}.{sub}"] = dict(sub_def, _multi_of=path)
            if "properties" in definition:
                self._add_properties(path + ".", definition["properties"])

    def copy(self) -> Mappings:
        other = Mappings()
        other.fields = copy.deepcopy(self.fields)
        other.dynamic = self.dynamic
        other.date_detection = self.date_detection
        other.numeric_detection = self.numeric_detection
        other.dynamic_templates = copy.deepcopy(self.dynamic_templates)
        other.meta = copy.deepcopy(self.meta)
        return other

    def to_es(self) -> dict[str, Any]:
        root: dict[str, Any] = {}
        out: dict[str, Any] = {}
        if self.dynamic is not True:
            out["dynamic"] = str(self.dynamic).lower()
        if self.meta is not None:
            out["_meta"] = self.meta
        if not self.date_detection:
            out["date_detection"] = False
        if self.numeric_detection:
            out["numeric_detection"] = True
        if self.dynamic_templates:
            out["dynamic_templates"] = self.dynamic_templates
        for path in sorted(self.fields, key=lambda p: p.split(".")):
            d = self.fields[path]
            _, _, name = path.rpartition(".")
            if "_multi_of" in d:
                owner = self._node(root, d["_multi_of"])
                sub = name
                owner.setdefault("fields", {})[sub] = {
                    k: v for k, v in d.items() if k != "_multi_of"
                }
                continue
            node = self._node(root, path)
            node.update({k: v for k, v in d.items() if not (k == "type" and v == "object")})
        if root:
            out["properties"] = root
        return out

    def _node(self, root: dict[str, Any], path: str) -> dict[str, Any]:
        parts = path.split(".")
        node: dict[str, Any] = root
        prefix = ""
        current: dict[str, Any] = {}
        for i, seg in enumerate(parts):
            prefix = f"{prefix}.{seg}" if prefix else seg
            if prefix in self.fields and "_multi_of" in self.fields[prefix] and i:
                break
            current = node.setdefault(seg, {})
            if i < len(parts) - 1:
                node = current.setdefault("properties", {})
        return current

    # -- lookups --------------------------------------------------------------------------
    def field_type(self, path: str) -> str | None:
        d = self.fields.get(path)
        return None if d is None else d.get("type", "object")

    def leaf_paths(self) -> Iterator[str]:
        for path, d in self.fields.items():
            if d.get("type") not in OBJECT_TYPES:
                yield path


def _glob(patterns: Any, value: str) -> bool:
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "object"
    return "string"


_DEFAULT_BY_KIND = {
    "boolean": "boolean",
    "long": "long",
    "double": "float",
    "object": "object",
    "date": "date",
    "string": "text",
}


class DocumentParser:
    """Checks one document against (a view of) an index's mappings, collecting new fields."""

    def __init__(self, mappings: Mappings, doc_id: str, ignore_malformed: bool) -> None:
        self.m = mappings
        self.doc_id = doc_id
        self.ignore_malformed = ignore_malformed
        self.new: dict[str, dict[str, Any]] = {}
        self.constant_values: dict[str, Any] = {}
        self.ignored: list[str] = []

    def lookup(self, path: str) -> dict[str, Any] | None:
        d = self.new.get(path)
        return d if d is not None else self.m.fields.get(path)

    def parse(self, source: dict[str, Any]) -> None:
        self._object(source, "", (), self.m.dynamic)

    # The dynamic setting is inherited: "true", "false", "strict" or "runtime" (treated as false,
    # since runtime fields are never indexed and never reject a document).
    @staticmethod
    def _dyn(value: Any) -> str:
        return str(value).lower()

    def _object(
        self, obj: dict[str, Any], prefix: str, raw: tuple[str | int, ...], dyn: Any
    ) -> None:
        for key, value in obj.items():
            raw_path = (*raw, key)
            parts = key.split(".") if key not in ("", ".") else [key]
            path = prefix
            cur_dyn = dyn
            for seg in parts[:-1]:
                parent = path
                path = f"{path}.{seg}" if path else seg
                d = self.lookup(path)
                if d is None:
                    mode = self._dyn(cur_dyn)
                    if mode == "strict":
                        raise self._strict(seg, parent, raw_path)
                    if mode != "true":
                        break
                    self.new[path] = {"type": "object"}
                elif d.get("type", "object") not in OBJECT_TYPES:
                    raise DocError(
                        "document_parsing_exception",
                        f"Could not dynamically add mapping for field [{key}]. Existing mapping "
                        f"for [{path}] must be of type object but found [{d['type']}].",
                        raw_path,
                    )
                else:
                    cur_dyn = d.get("dynamic", cur_dyn)
            else:
                leaf = parts[-1]
                full = f"{path}.{leaf}" if path else leaf
                self._value(full, leaf, path, value, raw_path, cur_dyn)

    def _strict(self, name: str, parent: str, raw_path: tuple[str | int, ...]) -> DocError:
        return DocError(
            "strict_dynamic_mapping_exception",
            f"mapping set to strict, dynamic introduction of [{name}] within "
            f"[{parent or '_doc'}] is not allowed",
            raw_path,
        )

    def _value(
        self,
        path: str,
        name: str,
        parent: str,
        value: Any,
        raw: tuple[str | int, ...],
        dyn: Any,
    ) -> None:
        if value is None:
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._value(path, name, parent, item, (*raw, i), dyn)
            return
        d = self.lookup(path)
        if d is None:
            mode = self._dyn(dyn)
            if mode == "strict":
                raise self._strict(name, parent, raw)
            if mode != "true":
                return
            d = self._dynamic_field(path, name, value)
        t = d.get("type", "object")
        if t in OBJECT_TYPES:
            if isinstance(value, dict):
                self._object(value, path, raw, d.get("dynamic", dyn))
                return
            raise DocError(
                "document_parsing_exception",
                f"object mapping for [{path}] tried to parse field [{name}] as object, "
                "but found a concrete value",
                raw,
            )
        if t == "flattened" or d.get("enabled") is False:
            return
        if isinstance(value, dict):
            raise DocError(
                "document_parsing_exception",
                self._failed(path, t, value),
                raw,
                cause("illegal_state_exception", "Can't get text on a START_OBJECT"),
                nested_location=True,
            )
        problem = self._check_scalar(path, d, t, value)
        if problem is None:
            return
        if t in MALFORMABLE and d.get("ignore_malformed", self.ignore_malformed):
            self.ignored.append(path)
            return
        raise DocError("document_parsing_exception", self._failed(path, t, value), raw, problem)

    def _failed(self, path: str, type_: str, value: Any) -> str:
        return (
            f"failed to parse field [{path}] of type [{type_}] in document with id "
            f"'{self.doc_id}'. Preview of field's value: '{java_value(value)}'"
        )

    def _check_scalar(
        self, path: str, d: dict[str, Any], t: str, value: Any
    ) -> dict[str, Any] | None:
        if t in NUMERIC_TYPES:
            return self._check_number(t, d, value)
        if t in DATE_TYPES:
            default = dates.DEFAULT_DATE_FORMAT if t == "date" else dates.DEFAULT_NANOS_FORMAT
            fmt = d.get("format", default)
            try:
                nanos = dates.parse(value, fmt)
            except dates.DateParseError:
                return cause(
                    "illegal_argument_exception",
                    f"failed to parse date field [{java_value(value)}] with format [{fmt}]",
                    caused_by=cause(
                        "date_time_parse_exception", "Failed to parse with all enclosed parsers"
                    ),
                )
            if t == "date_nanos" and nanos < 0:
                return cause(
                    "illegal_argument_exception",
                    f"date[{dates.format_iso(nanos)}] is before the epoch in 1970 and cannot be "
                    "stored in nanosecond resolution",
                )
            return None
        if t == "boolean":
            if isinstance(value, bool) or value in ("true", "false", ""):
                return None
            return cause(
                "illegal_argument_exception",
                f"Failed to parse value [{java_value(value)}] as only [true] or [false] are "
                "allowed.",
            )
        if t == "ip":
            try:
                ipaddress.ip_address(str(value))
            except ValueError:
                return cause(
                    "illegal_argument_exception",
                    f"'{java_value(value)}' is not an IP string literal.",
                )
            return None
        if t == "constant_keyword":
            expected = d.get("value", self.constant_values.get(path))
            if expected is None:
                self.constant_values[path] = str(value)
                return None
            if str(value) != expected:
                return cause(
                    "illegal_argument_exception",
                    f"[constant_keyword] field [{path}] only accepts values that are equal to the "
                    f"value defined in the mappings [{expected}], but got [{java_value(value)}]",
                )
        return None

    @staticmethod
    def _check_number(t: str, d: dict[str, Any], value: Any) -> dict[str, Any] | None:
        if isinstance(value, bool):
            return cause(
                "x_content_parse_exception",
                "Current token (VALUE_TRUE) not numeric, can not use numeric value accessors"
                if value
                else "Current token (VALUE_FALSE) not numeric, can not use numeric value accessors",
            )
        number: float | int
        if isinstance(value, str):
            text = value.strip()
            try:
                number = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
            except ValueError:
                return cause("illegal_argument_exception", f'For input string: "{value}"')
            if isinstance(number, float) and number != number:
                return cause("illegal_argument_exception", f'For input string: "{value}"')
        else:
            number = value
        if t in INTEGER_TYPES:
            if isinstance(number, float):
                if d.get("coerce") is False and not number.is_integer():
                    return cause(
                        "illegal_argument_exception", f"Value [{number}] has a decimal part"
                    )
                number = int(number)
            lo, hi = _INTEGER_RANGES[t]
            if not lo <= number <= hi:
                name = (
                    "an unsigned_long"
                    if t == "unsigned_long"
                    else f"a{'n' if t == 'integer' else ''} {t}"
                )
                return cause(
                    "illegal_argument_exception", f"Value [{value}] is out of range for {name}"
                )
        return None

    def _dynamic_field(self, path: str, name: str, value: Any) -> dict[str, Any]:
        kind = _json_kind(value)
        if kind == "string":
            if self.m.date_detection:
                try:
                    dates.parse_iso(value)
                    kind = "date"
                except dates.DateParseError:
                    pass
            if kind == "string" and self.m.numeric_detection:
                try:
                    float(value)
                    kind = "long" if re.fullmatch(r"[+-]?\d+", value) else "double"
                except ValueError:
                    pass
        definition = self._from_dynamic_templates(path, name, kind, value)
        if definition is None:
            if kind == "string":
                definition = {
                    "type": "text",
                    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
                }
            else:
                definition = {"type": _DEFAULT_BY_KIND[kind]}
        subfields = definition.pop("fields", {})
        definition.setdefault("type", _DEFAULT_BY_KIND[kind])
        self.new[path] = definition
        for sub, sub_def in subfields.items():
            self.new[f"{path}.{sub}"] = dict(sub_def, _multi_of=path)
        return definition

    def _from_dynamic_templates(
        self, path: str, name: str, kind: str, value: Any
    ) -> dict[str, Any] | None:
        for entry in self.m.dynamic_templates:
            (tpl,) = entry.values()
            mmt = tpl.get("match_mapping_type")
            if mmt is not None:
                kinds = [mmt] if isinstance(mmt, str) else mmt
                if "*" not in kinds and kind not in kinds:
                    continue
            if "unmatch_mapping_type" in tpl:
                un = tpl["unmatch_mapping_type"]
                if kind in ([un] if isinstance(un, str) else un):
                    continue
            if tpl.get("match_pattern") == "regex":
                if "match" in tpl and not re.fullmatch(tpl["match"], name):
                    continue
            elif "match" in tpl and not _glob(tpl["match"], name):
                continue
            if "unmatch" in tpl and _glob(tpl["unmatch"], name):
                continue
            if "path_match" in tpl and not _glob(tpl["path_match"], path):
                continue
            if "path_unmatch" in tpl and _glob(tpl["path_unmatch"], path):
                continue
            mapping = copy.deepcopy(tpl.get("mapping", {}))
            dynamic_type = "string" if kind == "string" else kind
            text = _replace_placeholders(mapping, name, dynamic_type)
            result: dict[str, Any] = text
            return result
        return None


def _replace_placeholders(mapping: Any, name: str, dynamic_type: str) -> Any:
    if isinstance(mapping, dict):
        return {k: _replace_placeholders(v, name, dynamic_type) for k, v in mapping.items()}
    if isinstance(mapping, list):
        return [_replace_placeholders(v, name, dynamic_type) for v in mapping]
    if isinstance(mapping, str):
        return mapping.replace("{name}", name).replace("{dynamic_type}", dynamic_type)
    return mapping


# -- token locations (only computed for rejected documents) ------------------------------------
_WS = b" \t\r\n"


def _skip(raw: bytes, i: int) -> int:
    n = len(raw)
    while i < n and raw[i] in _WS:
        i += 1
    return i


def _string_end(raw: bytes, i: int) -> int:
    i += 1
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x5C:
            i += 2
            continue
        if c == 0x22:
            return i + 1
        i += 1
    return i


def _scan(raw: bytes, i: int, path: tuple[str | int, ...], out: dict[Any, int]) -> int:
    import orjson

    i = _skip(raw, i)
    out[path] = i
    if i >= len(raw):
        return i
    c = raw[i]
    if c == 0x7B:  # {
        i = _skip(raw, i + 1)
        while i < len(raw) and raw[i] != 0x7D:
            end = _string_end(raw, i)
            key = orjson.loads(raw[i:end])
            i = _skip(raw, end) + 1
            i = _skip(raw, _scan(raw, i, (*path, key), out))
            if i < len(raw) and raw[i] == 0x2C:
                i = _skip(raw, i + 1)
        out[(*path, "\x00end")] = i
        return i + 1
    if c == 0x5B:  # [
        i = _skip(raw, i + 1)
        index = 0
        while i < len(raw) and raw[i] != 0x5D:
            i = _skip(raw, _scan(raw, i, (*path, index), out))
            index += 1
            if i < len(raw) and raw[i] == 0x2C:
                i = _skip(raw, i + 1)
        return i + 1
    if c == 0x22:
        return _string_end(raw, i)
    while i < len(raw) and raw[i] not in b",}] \t\r\n":
        i += 1
    return i


def locate(raw: bytes, raw_path: tuple[str | int, ...] | None, at_end: bool) -> tuple[int, int]:
    """Jackson's token location (1-based line and byte column) of a value in a document."""
    positions: dict[Any, int] = {}
    try:
        _scan(raw, 0, (), positions)
    except Exception:
        return 1, 1
    if at_end or raw_path is None:
        offset = positions.get(("\x00end",), len(raw))
    else:
        offset = positions.get(raw_path, 0)
    line = raw.count(b"\n", 0, offset) + 1
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return line, offset - line_start + 1


def source_values(source: dict[str, Any], path: str) -> list[Any]:
    """All values at a dotted path, following dotted keys and arrays like ES's source lookup."""
    out: list[Any] = []

    def walk(node: Any, parts: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, parts)
            return
        if not parts:
            if node is not None:
                out.append(node)
            return
        if not isinstance(node, dict):
            return
        for i in range(1, len(parts) + 1):
            key = ".".join(parts[:i])
            if key in node:
                walk(node[key], parts[i:])

    walk(source, path.split(".") if path else [])
    return out
