"""An independent, deliberately simple reading of what Docker says a container wrote.

Tests compare the documents in Elasticsearch with this. It shares no code with the shipper's
own parser: it reads the whole logs API body at once, frame by frame.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import docker


@dataclass(frozen=True)
class Line:
    timestamp: str  # Docker's RFC 3339 string, 9 fraction digits
    stream: str
    message: str


def raw_logs(client: docker.DockerClient, container_id: str) -> bytes:
    api = client.api
    url = api._url("/containers/{0}/logs", container_id)
    response = api._get(url, params={"stdout": 1, "stderr": 1, "timestamps": 1}, stream=False)
    api._raise_for_status(response)
    return bytes(response.content)


def reference_lines(client: docker.DockerClient, container_id: str) -> list[Line]:
    tty = bool(client.api.inspect_container(container_id)["Config"]["Tty"])
    body = raw_logs(client, container_id)
    messages: list[tuple[str, str, bytes]] = []  # (stream, timestamp, content)
    if tty:
        rest = body
        while rest:
            raw_ts, _, rest = rest.partition(b" ")
            # A message ends at its newline, or after 16 KiB (Docker's partial size), or,
            # cut by a stop, where a later run's Docker timestamp follows (not at its start).
            end = rest.find(b"\n", 0, 16384)
            end = end + 1 if end >= 0 else min(len(rest), 16384)
            later = re.search(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", rest[1:end])
            if later is not None and later.group().decode()[:-1] > raw_ts.decode():
                end = later.start() + 1
            messages.append(("stdout", raw_ts.decode(), rest[:end]))
            rest = rest[end:]
    else:
        pos = 0
        while pos < len(body):
            stream_id, size = struct.unpack(">BxxxL", body[pos : pos + 8])
            payload = body[pos + 8 : pos + 8 + size]
            pos += 8 + size
            raw_ts, _, content = payload.partition(b" ")
            messages.append(("stderr" if stream_id == 2 else "stdout", raw_ts.decode(), content))
    lines: list[Line] = []
    open_parts: dict[str, tuple[str, bytes]] = {}
    for stream, ts, content in messages:
        first_ts, sofar = open_parts.pop(stream, (ts, b""))
        if first_ts != ts:
            # Parts of a split line share their first part's time: another time means the
            # held part was a line cut by the container's stop.
            lines.append(Line(first_ts, stream, sofar.decode("utf-8", "replace")))
            first_ts, sofar = ts, b""
        sofar += content
        if sofar.endswith(b"\n"):
            text = sofar[:-1]
            if tty and text.endswith(b"\r"):
                text = text[:-1]
            lines.append(Line(first_ts, stream, text.decode("utf-8", "replace")))
        else:
            open_parts[stream] = (first_ts, sofar)
    for stream, (ts, sofar) in open_parts.items():
        lines.append(Line(ts, stream, sofar.decode("utf-8", "replace")))
    return lines


def lines_of_documents(documents: list[dict[str, Any]]) -> list[Line]:
    out = []
    for document in documents:
        source = document.get("_source", document)
        log = source.get("log") or {}
        out.append(Line(source["@timestamp"], log.get("iostream", ""), source["message"]))
    return out
