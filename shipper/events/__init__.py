"""The notable events: each defined once, so that its message, its fields and its counters
can never drift apart (as Vector's `internal_events`: one definition per event, whose
`emit` logs and counts; the call site only supplies values).

An event is a function named for what happened, in the module of its area:

    docker       the Docker source: the daemon, each container's reading
    cri          the CRI source: the runtime's CRI API, each pod container's log files
    sources      what every source shares: followers, hints, rate limits, rotation risk
    storage      the disk buffer, checkpoints, the first-start record, disk full or failing
    elasticsearch  the output: connection, bulk answers, templates, dead letters
    kibana       the data view setup
    lifecycle    start and stop, the first start's decision, config reloads, the hot path

A call site says what happened, with values, and nothing else:

    events.docker.lost(error=exc, delay_s=delay)

The rules (tests/unit/test_events.py checks each):

* Only this package logs. No other module imports `logging` (but `logsetup`, which sets up
  the handlers) or calls `telemetry.error`, `warning`, `warning_per`, `every_time`, `info`,
  `info_per`, `debug` or `rate_limited`.
* An event takes keyword arguments that are values (exceptions, ids, paths, counts,
  seconds), not sentences; it alone decides how they are written (ids cut to 12 characters,
  delays rounded, Elasticsearch's reasons cut to 300 characters, exceptions as `str`, or
  `repr` where the exception's type is the news).
* A warning or an error counts one `shipper_errors_total{kind}` per occurrence, logged or
  not (`telemetry.error`, `warning`, `warning_per` and `every_time` do both); any other
  counter that moves with it (`shipper_disk_full_total{what}`, `shipper_retries_total`,
  `shipper_dead_lettered_total`, ...) moves in the event too. Info and debug lines count no
  error.
* Logs are rate-limited per kind (the first line, then one per 30 s with
  `suppressed_since_last`); per kind and subject (`warning_per`, `info_per`: a container, a
  data stream) where one subject's line must not hide another's; every time
  (`every_time`) only for the few lines that each name a different file or problem.
* The kind (the label operators alert on) and the message text are part of the interface:
  change them only together with docs/operations.md and the tests that assert them.
* Every event is used somewhere in `shipper/`.

To add one: write the function in its area's module, with a one-line docstring saying what
happened, keyword-only typed arguments, the counters that belong to it and one log line;
call it where it happens; test its line and counters if it does more than log.
"""

from __future__ import annotations

from shipper.events import cri, docker, elasticsearch, kibana, lifecycle, sources, storage

__all__ = ["cri", "docker", "elasticsearch", "kibana", "lifecycle", "sources", "storage"]
