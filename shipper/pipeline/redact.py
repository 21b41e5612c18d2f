"""Masks secrets in messages and JSON field values before anything reaches the disk buffer.

Built-in presets (all on by default, each can be turned off):
  key_value      password=…, passwd, pwd, secret, token, api_key, access_key, private_key,
                 credentials (also prefixed: db_password, X-Auth-Token, client_secret) in the
                 forms k=v, k: v, "k": "v", 'k': 'v' and escaped \\"k\\":\\"v\\". Only the value
                 is masked. In decoded JSON, a string under such a key is masked whole.
  authorization  Authorization: <scheme> <credentials>, and "Bearer <token>" anywhere (a
                 token needs 8+ characters and a digit or one of . - _ ~ + / so prose like
                 "bearer authentication" stays).
  aws_access_key AKIA… / ASIA… access key ids (20 characters).
  credit_card    13-19 digits, optionally grouped by spaces or dashes, masked only when the
                 Luhn check passes and the prefix is one card networks issue (2221-2720, 3-6):
                 epoch timestamps (1…), dates (2024…), UUID parts and other ids stay.
  url_password   the password in scheme://user:password@host.
Config rules run after the presets, in order. A record that had anything masked gets the
flag `redacted`; counts are per rule name and per record.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shipper.config import RedactionConfig
from shipper.model import LogRecord, record_field
from shipper.native import native
from shipper.pipeline.stats import ProcessorStats

_MESSAGE_FIELD = record_field("message")
_FIELDS_FIELD = record_field("fields")

REDACTED_FLAG = "redacted"

_SECRET_KEY = (
    r"(?:password|passwd|pwd|secret|token|credentials?"
    r"|(?:api|access|secret|private)[_-]?key)"
)
# Decoded JSON: a key ending in a secret word marks its string value(s) as secret.
_SECRET_KEY_SUFFIXES = tuple(
    ["password", "passwd", "pwd", "secret", "token", "credential", "credentials"]
    + [f"{word}{sep}key" for word in ("api", "access", "secret", "private") for sep in "_-"]
    + ["apikey", "accesskey", "secretkey", "privatekey"]
)

_KEY_VALUE = re.compile(
    r"""(?<![\w.-])(?P<key>\\?["']?[\w.-]*?"""
    + _SECRET_KEY
    + r"""\\?["']?)(?P<sep>\s*[=:]\s*)
    (?:
        \\"(?P<edq>(?:[^"\\]|\\[^"])+)\\"     # escaped JSON inside a message: \"k\":\"v\"
      | "(?P<dq>(?:[^"\\]|\\.)+)"
      | '(?P<sq>[^']+)'
      | (?P<bare>[^\s"',;&()}\]]+)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_AUTH_HEADER = re.compile(
    r"""(?P<head>\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?
    (?:(?:bearer|basic|digest|token|negotiate|apikey|aws4-hmac-sha256)\s+)?)
    (?P<cred>[^\s"',;]+)""",
    re.IGNORECASE | re.VERBOSE,
)
_BEARER = re.compile(
    r"(?P<head>\bbearer\s+)(?P<cred>(?=[\w\-.~+/]*[\d.~+/-])[\w\-.~+/]{8,}=*)", re.IGNORECASE
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_CARD_HINT = re.compile(r"[2-6]\d{3}[ -]?\d{4}")  # what every _CARD match starts with
# 13-19 digits, the first four together (every network prints them so): 4+4+5..11.
_CARD = re.compile(r"(?<![\w.-])[2-6]\d{3}[ -]?\d{4}(?:[ -]?\d){5,11}(?![\w]|[ .-]\d)")
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)(?P<cred>[^\s@/]+)(?=@)", re.IGNORECASE
)

Replacement = str | Callable[[re.Match[str]], str]
# (text, text.lower()) -> False when the rule cannot match: a substring test costs a tenth of
# a regex scan, and almost every line contains no secret at all.
Prefilter = Callable[[str, str], bool]


_LOWER_NEEDLES = {
    "key_value": ("pass", "pwd", "secret", "token", "key", "credential"),
    "authorization": ("authoriz", "bearer"),
}
_EXACT_NEEDLES = {"aws_access_key": ("AKIA", "ASIA"), "url_password": ("://",)}


# Digits -> "0", the separators a card number may have -> "-", everything else -> ".": in
# this form "could there be a card number here" is two plain byte searches, which cost a
# tenth of scanning the text with the hint's regex.
_CARD_SHAPES = bytes.maketrans(
    bytes(range(256)),
    bytes(48 if 48 <= b <= 57 else 45 if b in (32, 45) else 46 for b in range(256)),
)


class _BatchPrefilter:
    """Which lines of a batch some preset could match: one pass over all of them.

    Joining the messages and searching the whole text once costs far less per line than
    asking each line; a line is checked properly only when a needle (or a card-like digit
    run) falls inside it. A superset of `_presets_prefilter`'s answer, line by line.
    """

    def __init__(self, presets: Iterable[str]) -> None:
        presets = tuple(presets)
        self._lower = tuple(n for p in presets for n in _LOWER_NEEDLES.get(p, ()))
        self._exact = tuple(n for p in presets for n in _EXACT_NEEDLES.get(p, ()))
        self._cards = "credit_card" in presets
        self._lower_bytes = tuple(needle.encode() for needle in self._lower)
        self._exact_bytes = tuple(needle.encode() for needle in self._exact)

    def c_candidates(self, messages: list[str]) -> list[int] | None:
        """`python_candidates` message by message in C (ASCII case folding; the few
        characters whose lower case is ASCII or that are digits count as candidates)."""
        assert native is not None  # bound below only when it is loaded
        return native.redaction_candidates(
            messages, self._lower_bytes, self._exact_bytes, self._cards
        )

    def python_candidates(self, messages: list[str]) -> list[int] | None:
        """Indexes of the messages to check, in order; None: check every one."""
        text = "\n".join(messages)
        lower = text.lower()
        if len(lower) != len(text):
            return None  # lower-casing changed lengths (rare scripts): no offsets to map
        positions: list[int] = []
        for haystack, needles in ((lower, self._lower), (text, self._exact)):
            for needle in needles:
                at = haystack.find(needle)
                while at >= 0:
                    positions.append(at)
                    at = haystack.find(needle, at + 1)
        if self._cards:
            if text.isascii():  # byte offsets are character offsets
                shapes = text.encode("ascii").translate(_CARD_SHAPES)
                for run in (b"00000000", b"0000-0000"):
                    at = shapes.find(run)
                    while at >= 0:
                        positions.append(at)
                        at = shapes.find(run, at + 1)
            else:
                positions.extend(match.start() for match in _CARD_HINT.finditer(text))
        if not positions:
            return []
        ends = list(itertools.accumulate(len(message) + 1 for message in messages))
        return sorted({bisect.bisect_right(ends, position) for position in positions})

    # Chosen once, at import (shipper/native.py decides whether the C hot path is usable).
    candidates = c_candidates if native is not None else python_candidates


def _presets_prefilter(presets: Iterable[str]) -> Callable[[str], bool]:
    """False when no preset can match `text`: one pass of substring tests for them all."""
    lower_needles = tuple(n for p in presets for n in _LOWER_NEEDLES.get(p, ()))
    exact_needles = tuple(n for p in presets for n in _EXACT_NEEDLES.get(p, ()))
    card_hint = _CARD_HINT.search if "credit_card" in presets else None

    def could_match(text: str) -> bool:
        if lower_needles:
            lower = text.lower()
            for needle in lower_needles:
                if needle in lower:
                    return True
        for needle in exact_needles:
            if needle in text:
                return True
        return card_hint is not None and card_hint(text) is not None

    return could_match


def _contains_any(*needles: str, lowered: bool) -> Prefilter:
    if lowered:
        return lambda _text, lower: any(needle in lower for needle in needles)
    return lambda text, _lower: any(needle in text for needle in needles)


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    replacement: Replacement
    prefilter: Prefilter | None = None


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_issued(digits: str) -> bool:
    return digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720


def _preset_rules(name: str, mask: str) -> list[_Rule]:
    def key_value(match: re.Match[str]) -> str:
        if match["edq"] is not None:
            value = f'\\"{mask}\\"'
        elif match["dq"] is not None:
            value = f'"{mask}"'
        elif match["sq"] is not None:
            value = f"'{mask}'"
        elif match.string.startswith(mask, match.start("bare")):
            return match[0]  # already masked: redaction stays idempotent
        else:
            value = mask
        return match["key"] + match["sep"] + value

    def credentials(match: re.Match[str]) -> str:
        if match.string.startswith(mask, match.start("cred")):
            return match[0]
        return match["head"] + mask

    def card(match: re.Match[str]) -> str:
        digits = match[0].replace(" ", "").replace("-", "")
        return mask if _card_issued(digits) and _luhn_ok(digits) else match[0]

    if name == "key_value":
        words = _contains_any("pass", "pwd", "secret", "token", "key", "credential", lowered=True)
        return [_Rule(name, _KEY_VALUE, key_value, words)]
    if name == "authorization":
        return [
            _Rule(name, _AUTH_HEADER, credentials, _contains_any("authoriz", lowered=True)),
            _Rule(name, _BEARER, credentials, _contains_any("bearer", lowered=True)),
        ]
    if name == "aws_access_key":
        prefixes = _contains_any("AKIA", "ASIA", lowered=False)
        return [_Rule(name, _AWS_KEY_ID, lambda _match: mask, prefixes)]
    if name == "credit_card":
        return [_Rule(name, _CARD, card)]
    if name == "url_password":
        return [_Rule(name, _URL_PASSWORD, credentials, lambda t, _l: "://" in t and "@" in t)]
    raise ValueError(f"unknown redaction preset {name!r}")


class Redactor:
    def __init__(self, cfg: RedactionConfig, stats: ProcessorStats) -> None:
        self._stats = stats
        self.mask = cfg.mask
        rules: list[_Rule] = []
        for preset in cfg.presets:
            rules.extend(_preset_rules(preset, cfg.mask))
        for rule in cfg.rules:
            mask = cfg.mask
            replacement: Replacement = (
                rule.replacement if rule.replacement is not None else (lambda _m, m=mask: m)
            )
            rules.append(_Rule(rule.id, re.compile(rule.pattern), replacement))
        self._rules = tuple(rules)
        self._mask_json_keys = "key_value" in cfg.presets
        # Own rules have no known needle, so with any of them every text is scanned.
        self._could_match = None if cfg.rules else _presets_prefilter(cfg.presets)
        self._batch = None if cfg.rules else _BatchPrefilter(cfg.presets)
        # Whether records may carry decoded JSON fields (a JSON stage runs before us).
        self.fields_possible = True

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def redact_text(self, text: str, hits: set[str]) -> str:
        """`text` with every rule applied; adds the names of rules that masked to `hits`."""
        if self._could_match is not None and not self._could_match(text):
            return text
        lower = text.lower()
        for rule in self._rules:
            if rule.prefilter is not None and not rule.prefilter(text, lower):
                continue
            new, count = rule.pattern.subn(rule.replacement, text)
            if count and new != text:
                hits.add(rule.name)
                text = new
                lower = text.lower()
        return text

    def apply(self, records: list[LogRecord]) -> list[LogRecord]:
        if self._batch is not None and len(records) > 1:
            candidates = self._batch.candidates(list(map(_MESSAGE_FIELD, records)))
            if candidates is not None:
                # Decoded JSON fields are not in the joined text: those records are walked.
                # Most batches have none: one C-level test before a Python loop over them.
                with_fields = (
                    [i for i, record in enumerate(records) if record.fields]
                    if self.fields_possible and any(map(_FIELDS_FIELD, records))
                    else []
                )
                if with_fields:
                    candidates = sorted({*candidates, *with_fields})
                if not candidates:
                    return records
                out = list(records)
                for index in candidates:
                    out[index] = self._apply_one(records[index])
                return out
        return [self._apply_one(record) for record in records]

    def _apply_one(self, record: LogRecord) -> LogRecord:
        hits: set[str] = set()
        message = self.redact_text(record.message, hits)
        fields = record.fields
        if fields:
            fields = self._walk_mapping(fields, hits)
        if hits:
            self._stats.redacted.update(hits)
            record = record._replace(
                message=message, fields=fields, flags=(*record.flags, REDACTED_FLAG)
            )
        return record

    def _walk_mapping(self, mapping: Mapping[str, Any], hits: set[str]) -> Mapping[str, Any]:
        # Copy on write: a mapping is rebuilt only if something in it changed.
        changed: dict[str, Any] | None = None
        for key, value in mapping.items():
            secret = self._mask_json_keys and key.lower().endswith(_SECRET_KEY_SUFFIXES)
            new = self._walk(value, hits, secret)
            if new is not value:
                if changed is None:
                    changed = dict(mapping)
                changed[key] = new
        return mapping if changed is None else changed

    def _walk(self, value: Any, hits: set[str], secret: bool) -> Any:
        if isinstance(value, str):
            if secret:
                if value == self.mask or not value:
                    return value
                hits.add("key_value")
                return self.mask
            new = self.redact_text(value, hits)
            return value if new == value else new
        if isinstance(value, Mapping):
            return self._walk_mapping(value, hits)
        if isinstance(value, list):
            items = [self._walk(item, hits, secret) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return items
        return value
