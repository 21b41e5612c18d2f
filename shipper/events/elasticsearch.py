"""Events of the Elasticsearch output: the connection, bulk answers, templates, dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from shipper import telemetry

_REASON_CHARS = 300  # Elasticsearch's reasons can quote a whole document: the start says enough


def tls_verification_off(*, hosts: Sequence[str]) -> None:
    """TLS to Elasticsearch is not verified (`verify_certs: false`), said at every start."""
    telemetry.error(
        "tls_verification_disabled",
        "TLS CERTIFICATE VERIFICATION IS OFF (elasticsearch.verify_certs: false): "
        "anyone between the shipper and Elasticsearch can read and change the logs "
        "and the credentials. Use ca_certs or ssl_assert_fingerprint instead.",
        hosts=list(hosts),
    )


def connected(*, version: str, major: int) -> None:
    """The cluster answered, is supported, and its templates are in place."""
    telemetry.info("Connected to Elasticsearch.", version=version, major=major)


def unsupported(*, error: BaseException) -> None:
    """The cluster is not an Elasticsearch we support: nothing is sent, the buffer keeps it."""
    telemetry.error(
        "elasticsearch_unsupported",
        "The cluster is not a supported Elasticsearch (8.x or 9.x); nothing is "
        "sent, the buffer keeps the data.",
        error=str(error),
    )


def request_refused(
    *,
    auth: bool,
    cause: str,
    status: int | None,
    error: BaseException,
    during: str,
    delay_s: float,
) -> None:
    """A whole request was refused in a way only an operator can fix (credentials,
    privileges, a wrong URL): retried slowly. `cause` says what to check; /readyz says it
    too. Counted as elasticsearch_auth (401, 403: `auth`) or elasticsearch_refused."""
    telemetry.error(
        "elasticsearch_auth" if auth else "elasticsearch_refused",
        cause + ". Data is kept in the buffer and sending is retried.",
        status=status,
        error=str(error),
        during=during,
        delay_s=round(delay_s, 2),
    )


def request_failed(
    *, status: int | None, error: BaseException, during: str, delay_s: float
) -> None:
    """A request failed in a way that passes (no answer, overload, 5xx): retried."""
    telemetry.warning(
        "elasticsearch_request_failed",
        "Elasticsearch request failed; it will be retried, the buffer keeps the data.",
        status=status,
        error=str(error),
        during=during,
        delay_s=round(delay_s, 2),
    )


def items_retried(*, items: int, retry_queue: int) -> None:
    """Items of a bulk answer were rejected for now (429, 5xx...): counted as retries,
    parked, sent again after a backoff."""
    telemetry.retries.labels("item_rejected").inc(items)
    telemetry.warning(
        "bulk_items_retried",
        "Elasticsearch rejected items for now; they are sent again after a backoff.",
        items=items,
        retry_queue=retry_queue,
    )


def item_auth_denied(*, status: int, error_type: str, reason: str) -> None:
    """Elasticsearch denied a privilege for some documents (per item): kept and retried."""
    telemetry.error(
        "elasticsearch_item_auth",
        "Elasticsearch denied the shipper's user a privilege it needs for some "
        "documents (create_doc and auto_configure on their data stream); they are "
        "kept and sent again.",
        status=status,
        error_type=error_type,
        reason=reason[:_REASON_CHARS],
    )


def failure_store_used(*, data_stream: str, records: int) -> None:
    """Elasticsearch kept records in a data stream's failure store (not as log records)."""
    telemetry.warning(
        "failure_store_used",
        "Elasticsearch could not index some records and kept them in the data stream's "
        "failure store (search <stream>::failures); they are not stored as log records.",
        records=records,
        data_stream=data_stream,
    )


def failure_store_not_enabled(*, data_stream: str) -> None:
    """`failure_store: on`, but a data stream made before has none: its failures are
    dead-lettered. Logged once per stream (the kind's rate limit would hide the second
    stream's line)."""
    telemetry.warning_per(
        "failure_store_not_enabled",
        data_stream,
        "elasticsearch.failure_store is on, but this data stream has no failure store: it "
        "was created before, and a template's data stream options apply only when a stream "
        "is created. Enable it with PUT _data_stream/<name>/_options "
        '{"failure_store":{"enabled":true}}; meanwhile its failures are dead-lettered.',
        data_stream=data_stream,
    )


def dead_lettered(
    *,
    error_type: str,
    reason: str,
    status: int,
    target_index: str,
    destination: str,
) -> None:
    """Elasticsearch can never index a record: it goes to the dead letters, counted under
    `shipper_dead_lettered_total{error_type}` (the HTTP status when there is no type)."""
    telemetry.dead_lettered.labels(error_type or str(status)).inc()
    telemetry.error(
        "dead_letter",
        "Elasticsearch can never index a record; it was dead-lettered with the reason.",
        error_type=error_type,
        reason=reason[:_REASON_CHARS],
        status=status,
        target_index=target_index,
        destination=destination,
    )


def dead_letters_to_file(*, records: int, error_type: str, reason: str, path: Path) -> None:
    """The dead-letter data stream can never take some records: they go to the file."""
    telemetry.error(
        "dead_letter_file",
        "The dead-letter data stream can never take some records; they were written "
        "to the dead-letter file.",
        records=records,
        error_type=error_type,
        reason=reason[:_REASON_CHARS],
        path=str(path),
    )


Installable = Literal["index template", "component template", "ILM policy"]


def template_refused(*, data_stream: str, error: BaseException) -> None:
    """Elasticsearch refused a template (no manage_index_templates): shipping goes on with
    the cluster's matching template."""
    telemetry.error(
        "template_refused",
        "Elasticsearch refused the shipper's template; documents are sent anyway "
        "with the cluster's matching template. Grant manage_index_templates or set "
        "elasticsearch.install_template: false.",
        data_stream=data_stream,
        error=str(error),
    )


def template_left_alone(*, what: Installable, name: str, why: str) -> None:
    """A template or policy differs from ours but is not ours to overwrite."""
    telemetry.info(
        f"The {what} is left as it is ({why}); set "
        "elasticsearch.template_overwrite: true to replace it.",
        name=name,
    )


def template_installed(*, what: Installable, name: str, why: str) -> None:
    """A template or policy was written (missing, or ours and out of date)."""
    telemetry.info(f"Installed the {what}.", name=name, reason=why)
