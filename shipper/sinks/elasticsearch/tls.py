"""The TLS context that presents a client certificate (mutual TLS), checked at start.

Elasticsearch can require clients to show a certificate (`xpack.security.http.ssl.
client_authentication: required`). The official client loads `client_cert`/`client_key`
itself, but with no password: an encrypted key would make OpenSSL ask for one on the
terminal. So when a client certificate is configured we build the whole context here, as
elastic-transport's `ssl_context_from_node_config` and its aiohttp node would (TLS 1.2 at
least, verification per `verify_certs`, `ca_certs` or certifi's bundle), plus the key's
password, and hand it to the client, which then uses it as it is.

Every file problem is a ConfigError naming the key (exit 2 at start), so `check-config` and
`run` refuse the same configs: a missing file, a file without a PEM certificate or key, an
encrypted key without its password or with a wrong one, a key of another certificate.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from urllib.parse import urlsplit

from shipper.config import ElasticsearchConfig
from shipper.errors import ConfigError
from shipper.sinks.elasticsearch.secrets import read_secret

CERT_KEY = "elasticsearch.client_cert"
KEY_KEY = "elasticsearch.client_key"


class _PasswordNeeded(Exception):
    pass


def client_tls_context(config: ElasticsearchConfig) -> ssl.SSLContext | None:
    """The context with the client certificate loaded; None when none is configured."""
    if config.client_cert is None:
        return None
    cert_pem = _read_pem(CERT_KEY, config.client_cert)
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise ConfigError(CERT_KEY, f"{config.client_cert!r} holds no PEM certificate")
    key_path = config.client_key or config.client_cert
    key_key = KEY_KEY if config.client_key else CERT_KEY
    key_pem = _read_pem(key_key, key_path)
    if "PRIVATE KEY-----" not in key_pem:
        where = "" if config.client_key else " (give the key as client_key)"
        raise ConfigError(key_key, f"{key_path!r} holds no PEM private key{where}")
    encrypted = "ENCRYPTED" in key_pem  # PKCS#8 "ENCRYPTED PRIVATE KEY", or Proc-Type
    password_key = (
        "elasticsearch.client_key_password_file"
        if config.client_key_password_file
        else "elasticsearch.client_key_password"
    )
    password = read_secret(
        config.client_key_password, config.client_key_password_file, password_key
    )

    def give_password() -> str:
        if password is None:
            raise _PasswordNeeded
        return password

    context = _base_context(config)
    try:
        context.load_cert_chain(config.client_cert, config.client_key, password=give_password)
    except _PasswordNeeded:
        raise ConfigError(
            "elasticsearch.client_key_password",
            f"{key_path!r} is encrypted: give client_key_password or client_key_password_file",
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                key_key, f"{key_path!r} is not the key of the certificate in client_cert"
            ) from None
        if encrypted and password is not None:
            raise ConfigError(password_key, f"does not decrypt {key_path!r}") from None
        raise ConfigError(key_key, f"{key_path!r} cannot be loaded ({exc})") from None
    return context


def _read_pem(key: str, path: str) -> str:
    if os.path.isdir(path):
        raise ConfigError(key, f"{path!r} is a directory, not a PEM file")
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None


def _base_context(config: ElasticsearchConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not config.verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # Like the client, which checks the name of every host not given as an IP address (one
    # context serves all hosts here: with any named host, names are checked for all).
    context.check_hostname = not all(_is_ip(host) for host in config.hosts)
    context.verify_mode = ssl.CERT_REQUIRED
    ca_certs = config.ca_certs or _default_ca_bundle()
    if ca_certs is not None:
        if os.path.isdir(ca_certs):
            context.load_verify_locations(capath=ca_certs)
        else:
            context.load_verify_locations(cafile=ca_certs)
    return context


def _default_ca_bundle() -> str | None:
    """certifi's bundle, as the client uses when ca_certs is not given."""
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def _is_ip(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
