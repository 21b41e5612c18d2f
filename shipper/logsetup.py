"""The shipper's own logs: JSON lines on stderr (text on a terminal), never secrets.

Structured fields travel in `extra={"fields": {...}}`. Secrets are kept out three ways, as
lines of defence behind "never pass a secret to a log call": values of fields whose name
looks like a secret are masked; the secret values of the config (passwords, API keys,
tokens, the contents of their `_file`s), registered at startup, are replaced wherever they
appear in a formatted line, including exception texts; and the password part of URLs
(`scheme://user:password@host`) and `Authorization:` header values are masked.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

MASK = "***"
_SECRET_WORDS = ("password", "passwd", "api_key", "apikey", "token", "secret", "authorization")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@/\s]+@")
_AUTH_HEADER = re.compile(
    r"((?:authorization|api-key)['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+(?:\s+[^'\",}\s]+)?", re.I
)
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line (shorter than 4 characters are ignored:
    masking every `a` would garble the logs and protects nothing)."""
    global _secret_pattern
    _secrets.update(value for value in values if len(value) >= 4)
    if _secrets:
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(value) for value in ordered))


def scrub(text: str) -> str:
    """`text` with registered secrets, URL passwords and Authorization values masked."""
    if _secret_pattern is not None:
        text = _secret_pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    if "uthorization" in text or "pi-key" in text or "PI-KEY" in text:
        text = _AUTH_HEADER.sub(rf"\1{MASK}", text)
    return text


def _safe(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        key: MASK if any(word in key.lower() for word in _SECRET_WORDS) else value
        for key, value in fields.items()
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            document.update(_safe(fields))
        if record.exc_info:
            document["error.stack_trace"] = self.formatException(record.exc_info)
        return scrub(orjson.dumps(document, default=str).decode())


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in _safe(fields).items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return scrub(text)


def configure(level: str, fmt: str) -> None:
    """Logs of `shipper.*` at `level`, of libraries at warning and above, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("shipper").setLevel(level.upper())
