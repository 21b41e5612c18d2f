"""Start-time checks beyond the schema, the same for `run`, `backfill` and `check-config`.

The schema (`shipper.config`) checks each value's shape. These check, on this machine and
without connecting anywhere, what the values point at:

* every `*_file` secret (any section) is readable UTF-8 text and not empty;
* every CA bundle (`elasticsearch.ca_certs`, `kibana.ca_certs`) is readable and holds PEM
  certificates;
* `docker.cert_path`'s TLS files load, where the Docker host uses TLS;
* the client certificate (`elasticsearch.client_cert`, `client_key`, the key's password)
  loads: PEM files, the key belongs to the certificate, an encrypted key has its password.

Every section is checked whatever `output` says: a config naming a file that is not there is
wrong even where that section is not used today. A problem is a ConfigError naming the key
(exit code 2), so `check-config` accepts exactly what `run` starts with, and a bad file
stops the start at once instead of surfacing later as a retry loop or a traceback.
"""

from __future__ import annotations

import os
import ssl

from shipper.commands.secrets import check_secret_files
from shipper.config import Config, DockerConfig
from shipper.docker.api import tls_context
from shipper.errors import ConfigError
from shipper.sinks.elasticsearch.tls import client_tls_context


def check(config: Config) -> None:
    """Raises ConfigError naming the first key whose file is unusable."""
    check_secret_files(config)
    for key, path in (
        ("elasticsearch.ca_certs", config.elasticsearch.ca_certs),
        ("kibana.ca_certs", config.kibana.ca_certs),
    ):
        if path is not None:
            check_ca_bundle(key, path)
    client_tls_context(config.elasticsearch)
    _check_docker_tls(config.docker)


def tls_warnings(config: Config) -> list[str]:
    """The configured TLS settings `run` warns about at every start, as sentences."""
    warnings = []
    es = config.elasticsearch
    if (
        any(host.startswith("https://") for host in es.hosts)
        and not es.verify_certs
        and not es.ssl_assert_fingerprint
    ):
        warnings.append(
            "elasticsearch.verify_certs is false: the certificates of the https:// hosts are "
            "not verified (use ca_certs or ssl_assert_fingerprint instead)"
        )
    kibana = config.kibana
    if kibana.url is not None and kibana.url.startswith("https://") and not kibana.verify_certs:
        warnings.append(
            "kibana.verify_certs is false: Kibana's certificate is not verified (use "
            "kibana.ca_certs instead)"
        )
    return warnings


def check_ca_bundle(key: str, path: str) -> None:
    """A CA bundle the TLS clients will load: readable, with at least one PEM certificate."""
    if os.path.isdir(path):
        raise ConfigError(key, f"{path!r} is a directory, not a PEM file")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:  # before OSError: it is one
        raise ConfigError(key, f"{path!r} holds no PEM certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None


def _check_docker_tls(docker: DockerConfig) -> None:
    # Loads the files DockerClient loads, when it loads them; a bad one is a ConfigError.
    if docker.host.startswith("unix://") or not docker.cert_path:
        return
    tls_context(docker.tls_verify, docker.cert_path)
