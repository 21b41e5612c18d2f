"""Views of a config for people and logs: masked for printing, its secret values for the
log filter, the keys that changed on a reload.

Which keys are secret is decided once, here (`is_secret_key`): masking, the log filter,
error messages and the `*_file` secret checks all ask it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from shipper.config.schema import Config

SECRET_WORDS = ("password", "api_key", "token", "secret")


def masked(config: Config) -> dict[str, Any]:
    """The config as plain data with every secret replaced by `***` (for printing)."""

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if node is not None and is_secret_key(key) and not key.endswith("_file"):
            return "***"
        if isinstance(node, str) and "://" in node and "@" in node:
            return _URL_USERINFO.sub(r"\1***@", node)
        return node

    return walk(config.model_dump(mode="json"), "")  # type: ignore[no-any-return]


def secret_values(config: Config) -> list[str]:
    """The secret strings the config holds, for the log formatter to keep out of logs."""
    found: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str):
            if is_secret_key(key) and not key.endswith("_file") and node:
                found.append(node)
            found.extend(m.group(2) for m in _URL_USERINFO.finditer(node) if m.group(2))

    walk(config.model_dump(mode="json"), "")
    return found


def secret_files(config: Config) -> Iterator[tuple[str, str, str | None]]:
    """(dotted key, path, inline value) of every secret given as a file (`password_file`,
    `api_key_file`, `bearer_token_file`, in any section)."""

    def walk(node: Any, prefix: str) -> Iterator[tuple[str, str, str | None]]:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                yield from walk(value, dotted)
            elif key.endswith("_file") and isinstance(value, str):
                stem = key[: -len("_file")]
                if is_secret_key(stem):
                    yield dotted, value, node.get(stem)

    yield from walk(config.model_dump(mode="json"), "")


def changed_keys(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (lists compare as a whole)."""
    changed: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                walk(a.get(name), b.get(name), f"{key}.{name}" if key else str(name))
        elif a != b:
            changed.append(key)

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), prefix)
    return changed


_URL_USERINFO = re.compile(r"(\w+://[^:/@\s]*:)([^@/\s]*)@")


def is_secret_key(key: str) -> bool:
    """Whether a key (or a `*_file` key) names a secret: its value is never shown."""
    return any(word in key for word in SECRET_WORDS)


def short_repr(value: Any) -> str:
    """A value for an error message: short, with URL passwords masked."""
    text = _URL_USERINFO.sub(r"\1***@", repr(value))
    return text if len(text) <= 60 else text[:57] + "..."
