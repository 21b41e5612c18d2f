"""`shipper status`: buffer size, per-container checkpoints, lag and accounting, dead letters.

Source, first that applies: `--url` (the agent's HTTP API, `GET /status`); the agent at
`metrics.listen` if it answers within a second (unless `--offline`); otherwise the files
under `storage.path`, read-only (see `shipper.status.from_storage`). Container names come
from the agent, or from Docker when it is reachable. Prints a table, or `--json`.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from shipper import status as report
from shipper.config import Config
from shipper.sizes import size_text

_AGENT_TIMEOUT_S = 1.0


def main(config: Config, *, url: str | None, offline: bool, as_json: bool) -> int:
    data: dict[str, Any] | None = None
    if url is not None:
        try:
            data = fetch(url)
        except (OSError, ValueError) as exc:
            print(f"shipper: the agent at {url} does not answer: {exc}", file=sys.stderr)
            return 1
    elif not offline and config.metrics.listen:
        agent = agent_url(config.metrics.listen)
        try:
            data = fetch(agent)
            url = agent
        except (OSError, ValueError):
            data = None
    if data is None:
        data = report.from_storage(Path(config.storage.path))
    _fill_names(config, data)
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(data, url))
    return 0


def agent_url(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def fetch(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=_AGENT_TIMEOUT_S) as response:
        data = orjson.loads(response.read())
    if not isinstance(data, dict):
        raise OSError("GET /status did not return a JSON object")
    return data


def _fill_names(config: Config, data: dict[str, Any]) -> None:
    rows = data.get("containers") or []
    if not any(row.get("name") is None for row in rows):
        return
    names = asyncio.run(_docker_names(config))
    for row in rows:
        if row.get("name") is None:
            row["name"] = names.get(row["id"])


async def _docker_names(config: Config) -> dict[str, str]:
    from shipper.build import docker_client
    from shipper.docker.api import DockerError

    docker = docker_client(config.docker)
    try:
        async with asyncio.timeout(5):
            listed = await docker.list_containers(all_containers=True)
    except (DockerError, TimeoutError):
        return {}
    finally:
        await docker.close()
    return {
        str(c["Id"]): str((c.get("Names") or ["?"])[0]).lstrip("/") for c in listed if c.get("Id")
    }


def render(data: dict[str, Any], url: str | None) -> str:
    lines: list[str] = []
    where = f"the agent at {url}" if data.get("source") == "agent" else "the files, read-only"
    lines.append(f"shipper status, from {where}; storage {data.get('storage_path')}")
    if "ready" in data:
        reasons = data.get("not_ready_reasons") or []
        lines.append("ready: yes" if data["ready"] else "ready: NO: " + "; ".join(reasons))
    buffer = data.get("buffer") or {}
    age = buffer.get("oldest_record_age_s")
    lines.append(
        f"buffer: {buffer.get('records', 0):,} records, {size_text(buffer.get('bytes', 0))} not yet "
        f"shipped" + (f"; the oldest waits for {_duration(age)}" if age else "")
    )
    for problem in data.get("problems") or []:
        lines.append(f"problem: {problem}")
    first = data.get("first_start")
    if first:
        where = (
            f"at {first['start_time'][:23]}Z"
            if first.get("start_time")
            else "from their first line"
        )
        lines.append(
            f"containers without a position begin {where} (start_at {first.get('start_at')}, "
            f"by {first.get('chosen_by')}, decided at the first start on this storage)"
        )
    lines.append("")
    every = data.get("containers") or []
    # A container never read from (not selected, or it logged nothing yet) has no position.
    rows = [r for r in every if r.get("following") or r.get("since_ns")]
    table = [("CONTAINER", "ID", "FOLLOWING", "CHECKPOINT (UTC)", "SKIP", "LAG")]
    for row in sorted(rows, key=lambda r: (r.get("name") or "~", r["id"])):
        checkpoint = row.get("checkpoint_time")
        table.append(
            (
                row.get("name") or "(gone)",
                row["id"][:12],
                "yes" if row.get("following") else "no",
                checkpoint[:23] + "Z" if checkpoint else "-",
                str(row.get("skip", 0)),
                _duration(row.get("lag_s")) if row.get("lag_s") is not None else "-",
            )
        )
    if rows:
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            lines.append(
                "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            )
    else:
        lines.append("no container positions")
    if len(every) > len(rows):
        lines.append(
            f"({len(every) - len(rows)} more known containers have no position: not selected, "
            "or nothing read yet; see --json)"
        )
    lines.append("")
    lines.extend(_accounting(data, every))
    dead = data.get("dead_letters") or {}
    by_type = dead.get("by_error_type") or {}
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(by_type.items()))
    lines.append(
        f"dead letters in the file: {dead.get('total', 0)}"
        + (f" ({detail})" if detail else "")
        + f"  [{dead.get('path')}]"
    )
    if "since_start" in dead:
        lines.append(f"dead letters since the agent started: {dead['since_start']}")
    failure_store = data.get("failure_store") or {}
    if "since_start" in failure_store:
        lines.append(
            "kept in a failure store (not as log records) since the agent started: "
            f"{failure_store['since_start']}"
        )
    return "\n".join(lines) + "\n"


# (column, key) of the accounting table; the meaning of each is in shipper/accounting.py.
_COUNT_COLUMNS = (
    ("READ", "lines_read"),
    ("JOINED", "joined"),
    ("DROPPED", "dropped_by_rule"),
    ("OVER QUOTA", "dropped_by_quota"),
    ("BUFFERED", "buffered"),
    ("RECOVERED", "recovered"),
    ("STORED", "stored"),
    ("EXISTED", "already_stored"),
    ("FAILURE STORE", "failure_stored"),
    ("DEAD", "dead_lettered"),
    ("WAITING", "waiting"),
    ("HELD", "held"),
)


def _accounting(data: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Where each container's lines went since the agent started (agent only)."""
    accounting = data.get("accounting")
    if not accounting:
        return ["line and record counts: only a running agent has them", ""]
    lines = [
        f"since the agent started ({str(accounting.get('since'))[:19]}Z; "
        f"{accounting.get('recovered_at_start', 0):,} records were in the buffer then):"
    ]
    table = [("CONTAINER", *(column for column, _ in _COUNT_COLUMNS))]
    counted = [r for r in rows if r.get("accounting")]
    for row in sorted(counted, key=lambda r: (r.get("name") or "~", r["id"])):
        counts = row["accounting"]
        table.append(
            (
                row.get("name") or row["id"][:12],
                *(f"{counts.get(key, 0):,}" for _, key in _COUNT_COLUMNS),
            )
        )
    totals = accounting.get("totals") or {}
    table.append(("(all)", *(f"{totals.get(key, 0):,}" for _, key in _COUNT_COLUMNS)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    problems = accounting.get("problems") or []
    if problems:
        lines.extend(f"THE COUNTS DO NOT ADD UP: {problem}" for problem in problems)
    else:
        lines.append(
            "buffered + recovered = stored + existed + failure store + dead + waiting, and "
            "read = buffered "
            "(less summaries) + joined + dropped + over quota + held: both hold"
        )
    lines.append("")
    return lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
