"""Events of the Kibana data view setup (`kibana.url`)."""

from __future__ import annotations

from shipper import telemetry


def tls_verification_off(*, url: str) -> None:
    """TLS to Kibana is not verified (`kibana.verify_certs: false`), said at every start:
    as loud as the Elasticsearch side, the Kibana credentials travel on this link."""
    telemetry.error(
        "kibana_tls_verification_disabled",
        "TLS CERTIFICATE VERIFICATION IS OFF (kibana.verify_certs: false): anyone "
        "between the shipper and Kibana can read and change the requests and the "
        "credentials. Use kibana.ca_certs instead.",
        url=url,
    )


def refused(*, error: BaseException) -> None:
    """Kibana refused to create the data view: not tried again until a restart."""
    telemetry.error(
        "kibana_setup",
        "Kibana refused to create the data view; fix kibana.* and restart.",
        error=str(error),
    )


def unavailable(*, error: BaseException, delay_s: float) -> None:
    """Kibana does not answer yet: the data view is created when it does."""
    telemetry.warning(
        "kibana_unavailable",
        "Kibana is not reachable yet; the data view is created when it is.",
        error=str(error) or type(error).__name__,
        delay_s=round(delay_s, 2),
    )


def data_view_ready(*, created: bool, data_view: str, pattern: str) -> None:
    """The data view exists now (created by us, or already there)."""
    telemetry.info(
        "Created the Kibana data view." if created else "The Kibana data view exists.",
        data_view=data_view,
        pattern=pattern,
    )
