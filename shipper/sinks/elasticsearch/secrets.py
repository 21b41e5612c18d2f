"""Secrets given inline or as files (`password_file`, `api_key_file`...), read once at start."""

from __future__ import annotations

from shipper.errors import ConfigError


def read_secret(value: str | None, path: str | None, key: str) -> str | None:
    """A secret given inline or as a file (read once, at start; trailing newline dropped).

    An unreadable file is a configuration error naming the key, so the shipper exits 2 at
    start instead of retrying with a wrong credential for ever.
    """
    if path is None:
        return value
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path!r} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(key, f"{path!r} is empty")
    return secret
