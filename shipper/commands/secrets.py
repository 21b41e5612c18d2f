"""The secret values a config holds, inline or in `*_file`s, for masking and checking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from shipper.config import Config, secret_values


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
                if any(word in stem for word in ("password", "api_key", "token", "secret")):
                    yield dotted, value, node.get(stem)

    yield from walk(config.model_dump(mode="json"), "")


def config_secrets(config: Config) -> list[str]:
    """Every secret value: inline ones, URL passwords, readable `_file` contents."""
    found = secret_values(config)
    for _key, path, _inline in secret_files(config):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with open(path, encoding="utf-8") as file:
                content = file.read().rstrip("\r\n")
            if content:
                found.append(content)
    return found


def check_secret_files(config: Config) -> None:
    """Raises ConfigError naming the key of a `_file` that cannot be read or is empty."""
    from shipper.sinks.elasticsearch.client import read_secret

    for key, path, inline in secret_files(config):
        read_secret(inline, path, key)
