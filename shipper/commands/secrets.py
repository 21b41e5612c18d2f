"""The secret values a config holds, inline or in `*_file`s, for masking and checking."""

from __future__ import annotations

import contextlib

from shipper.config import Config, secret_files, secret_values


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
    from shipper.sinks.elasticsearch.secrets import read_secret

    for key, path, inline in secret_files(config):
        read_secret(inline, path, key)
