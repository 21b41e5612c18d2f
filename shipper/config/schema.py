"""The configuration's schema: typed, closed models with their defaults and checks.

Every model forbids unknown keys so a typo fails at startup with the key's dotted path,
never mid-run. Units live in the names (`flush_interval_s`, `max_bytes`). The example
file `config/shipper.yml` documents every key with its default; `tests/unit/test_config.py`
checks that the two agree. How a config is read (file, environment, errors) is in
`loading.py`; this module only says what a valid config is.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shipper.docker.versions import AUTO, ApiVersion
from shipper.durations import EXAMPLES as DURATION_EXAMPLES
from shipper.durations import parse_duration_s

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Where the deployment files (Compose, Helm, `docker run` in the README) mount the host's
# containers directory into the shipper's container.
MOUNTED_CONTAINERS_PATH = "/var/lib/docker/containers"
START_AT_WORDS = ("beginning", "now")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyProblem(ValueError):
    """A check across fields that is about one of them: the error names that key.

    Raised in a model validator, pydantic would report the whole section
    (`elasticsearch: ...`); `parse_config` appends `key` (relative to the model, dotted) so
    the message says which key to change (`elasticsearch.password_file: ...`).
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def check_start_at(value: str) -> str:
    """`beginning`, `now` or a duration (`10m`, `2h`, `7d`); normalised to lower case."""
    cleaned = value.strip().lower()
    if cleaned in START_AT_WORDS or parse_duration_s(cleaned) is not None:
        return cleaned
    raise ValueError(f"must be beginning, now or a duration like {DURATION_EXAMPLES}")


class DockerConfig(_Closed):
    host: str = Field(
        default_factory=lambda: os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST,
        description="Docker Engine API address: unix:///path or tcp://host:port (DOCKER_HOST).",
    )
    tls_verify: bool = Field(
        default_factory=lambda: os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"),
        description="Use TLS and verify the daemon's certificate (DOCKER_TLS_VERIFY).",
    )
    cert_path: str | None = Field(
        default_factory=lambda: os.environ.get("DOCKER_CERT_PATH") or None,
        description="Directory with ca.pem, cert.pem, key.pem (DOCKER_CERT_PATH).",
    )
    api_version: str = Field(
        default_factory=lambda: os.environ.get("DOCKER_API_VERSION") or AUTO,
        description="Engine API version: auto (negotiated with the engine at every "
        "connection: the highest both support) or one to pin, e.g. 1.44 "
        "(DOCKER_API_VERSION, as the docker CLI takes it).",
    )
    reconnect_max_backoff_s: float = Field(default=10.0, gt=0)
    read_mode: Literal["api", "files", "auto"] = Field(
        default="auto",
        description="How container logs are read. api: the logs API; files: the json-file "
        "logs directly (fast path; containers whose files are not visible, or with another "
        "driver, still use the API, with a warning); auto: files where visible, else the API.",
    )
    containers_path: str | None = Field(
        default=None,
        description="Where this process sees Docker's containers directory (data-root + "
        "/containers), read-only, for read_mode files/auto. Default: in a container, "
        "/var/lib/docker/containers (mount it there); on the host, the engine's "
        "DockerRootDir + /containers.",
    )
    start_at: str | None = Field(
        default=None,
        description="Another name for the top-level start_at (read into it); giving both "
        "with different values is an error.",
    )

    @model_validator(mode="after")
    def _api_version(self) -> DockerConfig:
        if self.api_version != AUTO:
            try:
                pinned = str(ApiVersion.parse(self.api_version))
            except ValueError as exc:
                raise KeyProblem("api_version", f"{exc} (from {self.api_version_source})") from None
            object.__setattr__(self, "api_version", pinned)  # "v1.44" → "1.44"
        return self

    def containers_path_here(self, *, in_container: bool) -> str | None:
        """Docker's containers directory as this process sees it: the configured one; in a
        container, where the deployment files mount it; on the host, None: the engine
        says (DockerRootDir, learnt at each connection)."""
        if self.containers_path is not None:
            return self.containers_path
        return MOUNTED_CONTAINERS_PATH if in_container else None

    @property
    def api_version_source(self) -> str:
        """What set api_version, for messages: the key, or the docker CLI's variable."""
        return (
            "docker.api_version"
            if "api_version" in self.model_fields_set
            else ("DOCKER_API_VERSION")
        )

    @field_validator("host")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(unix|tcp|http|https)://.+", value):
            raise ValueError("must be unix:///path/to/docker.sock or tcp://host:port")
        return value


# Data stream naming (logs-<dataset>-<namespace>): lower case, no '-' inside a part.
_DATA_STREAM_PART = re.compile(r"[a-z0-9_.]{1,100}")


def _data_stream_part(value: str | None) -> str | None:
    if value is not None and not _DATA_STREAM_PART.fullmatch(value):
        raise ValueError("must be 1-100 characters of a-z, 0-9, '_' and '.'")
    return value


def _data_stream_full(name: str) -> str:
    if not re.fullmatch(r"logs-[a-z0-9_.]{1,100}-[a-z0-9_.]{1,100}", name):
        raise ValueError("must look like logs-<dataset>-<namespace> in lower case")
    return name


def _pipeline_name(value: str | None) -> str | None:
    # Elasticsearch takes any id; an empty or padded one is surely a typo.
    if value is not None and (not value or value != value.strip()):
        raise ValueError("must be an ingest pipeline id without surrounding spaces")
    return value


class RoutingRule(_Closed):
    """Sends the containers it matches to logs-<dataset>-<namespace>, through an ingest
    pipeline if it names one; first match wins."""

    name: str | None = Field(default=None, description="Glob on the container name.")
    image: str | None = Field(default=None, description="Glob on the image reference.")
    dataset: str | None = Field(default=None, description="Dataset; default: the default's.")
    namespace: str | None = Field(default=None, description="Namespace; default: the default's.")
    pipeline: str | None = Field(
        default=None, description="Ingest pipeline; default: elasticsearch.pipeline."
    )

    _parts = field_validator("dataset", "namespace")(_data_stream_part)
    _pipeline = field_validator("pipeline")(_pipeline_name)

    @model_validator(mode="after")
    def _complete(self) -> RoutingRule:
        if self.name is None and self.image is None:
            raise ValueError("a routing rule needs name, image or both")
        if self.dataset is None and self.namespace is None and self.pipeline is None:
            raise ValueError("a routing rule needs dataset, namespace, pipeline or some of them")
        return self


class DeadLetterConfig(_Closed):
    data_stream: str | None = Field(
        default="logs-shipper.deadletter-default",
        description="Data stream for records Elasticsearch can never index; null: file only.",
    )

    @field_validator("data_stream")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return name if name is None else _data_stream_full(name)


class IlmConfig(_Closed):
    enabled: bool = Field(default=False, description="Attach an ILM policy to the streams.")
    policy_name: str = Field(default="shipper-logs", min_length=1)
    rollover_max_age: str = Field(default="30d", description="Roll over after this age.")
    rollover_max_primary_shard_size: str = Field(default="50gb")
    delete_after: str | None = Field(
        default=None, description="Delete backing indices this long after rollover; null: keep."
    )


class ElasticsearchConfig(_Closed):
    hosts: list[str] = Field(default_factory=lambda: ["http://localhost:9200"], min_length=1)
    cloud_id: str | None = Field(
        default=None,
        description="Elastic Cloud deployment ID; decoded into hosts as the official clients "
        "do (give hosts or cloud_id, not both).",
    )
    username: str | None = None
    password: str | None = None
    password_file: str | None = Field(default=None, description="File holding the password.")
    api_key: str | None = None
    api_key_file: str | None = Field(default=None, description="File holding the API key.")
    bearer_token: str | None = None
    bearer_token_file: str | None = Field(default=None, description="File holding the token.")
    verify_certs: bool = True
    ca_certs: str | None = Field(default=None, description="CA bundle (PEM) for https hosts.")
    ssl_assert_fingerprint: str | None = Field(
        default=None,
        description="SHA-256 fingerprint of the server's certificate: 64 hex digits, colons "
        "allowed.",
    )
    client_cert: str | None = Field(
        default=None,
        description="Client certificate (PEM) for clusters that require one (mutual TLS); "
        "it may hold the key too.",
    )
    client_key: str | None = Field(default=None, description="Its private key (PEM).")
    client_key_password: str | None = Field(
        default=None, description="Password of an encrypted client_key."
    )
    client_key_password_file: str | None = Field(
        default=None, description="File holding that password."
    )
    data_stream: str = Field(
        default="logs-docker-default",
        description="Data stream written to: logs-<dataset>-<namespace>.",
    )
    routing: list[RoutingRule] = Field(
        default_factory=list,
        description="Per-container data streams by name/image glob; labels shipper.dataset and "
        "shipper.namespace override them.",
    )
    pipeline: str | None = Field(
        default=None,
        description="Ingest pipeline every document is sent through (the bulk action's "
        "pipeline); routing rules and the label shipper.pipeline override it.",
    )
    dead_letter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    failure_store: Literal["off", "on"] = Field(
        default="off",
        description="on: the shipper's templates enable the data stream failure store "
        "(Elasticsearch 8.19, 9.1 and later), which keeps documents the cluster cannot index.",
    )
    install_template: bool = True
    template_overwrite: bool = Field(
        default=False, description="Replace templates and ILM policies that are not ours."
    )
    ilm: IlmConfig = Field(default_factory=IlmConfig)
    retry_queue_max_docs: int = Field(
        default=20_000, gt=0, description="Rejected documents waiting to be retried, at most."
    )
    batch_max_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    batch_max_docs: int = Field(default=10_000, gt=0)
    flush_interval_s: float = Field(default=0.2, gt=0)
    max_concurrent_requests: int = Field(default=2, ge=1, le=64)
    compression: bool = True
    request_timeout_s: float = Field(default=30.0, gt=0)
    retry_max_backoff_s: float = Field(default=30.0, gt=0)

    _pipeline = field_validator("pipeline")(_pipeline_name)

    @model_validator(mode="before")
    @classmethod
    def _hosts_from_cloud_id(cls, data: Any) -> Any:
        """`cloud_id` becomes `hosts` here, so everything after sees one list of hosts (and
        `check-config` shows the decoded one)."""
        if not isinstance(data, dict) or not isinstance(data.get("cloud_id"), str):
            return data
        try:
            host = cloud_id_host(data["cloud_id"])
        except ValueError as exc:
            raise KeyProblem("cloud_id", str(exc)) from None
        if data.get("hosts") is not None:
            raise KeyProblem(
                "hosts", f"give hosts or cloud_id, not both (cloud_id decodes to {host})"
            )
        return {**data, "hosts": [host]}

    @field_validator("failure_store", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare on/off as true/false: take both spellings.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @field_validator("hosts")
    @classmethod
    def _urls(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not re.match(r"^https?://[^/\s]+", host):
                raise ValueError(f"{host!r} is not an http:// or https:// URL")
        return hosts

    @field_validator("data_stream")
    @classmethod
    def _data_stream_name(cls, name: str) -> str:
        return _data_stream_full(name)

    @field_validator("ssl_assert_fingerprint")
    @classmethod
    def _sha256_fingerprint(cls, value: str | None) -> str | None:
        # Checked here, not by the client: a malformed value would only fail inside the
        # first TLS handshake (a traceback from hex decoding, or "invalid length").
        if value is not None and not _SHA256_HEX.fullmatch(value.replace(":", "")):
            raise ValueError(
                "must be a SHA-256 fingerprint: 64 hex digits, colons allowed, as "
                "`openssl x509 -noout -fingerprint -sha256` prints it"
            )
        return value

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> ElasticsearchConfig:
        _check_one_source(self, ("password", "api_key", "bearer_token"))
        # (kind, the key that was given for it), in the order of the documentation.
        given = [
            (kind, key)
            for kind, key in (
                ("username/password", "username" if self.username is not None else None),
                ("api_key", _given_key(self, "api_key")),
                ("bearer_token", _given_key(self, "bearer_token")),
            )
            if key is not None
        ]
        if len(given) > 1:
            raise KeyProblem(
                given[1][1],
                "choose one way to authenticate, not " + " and ".join(k for k, _ in given),
            )
        _check_password_has_username(self, self.username)
        if self.dead_letter.data_stream == self.data_stream:
            raise KeyProblem("dead_letter.data_stream", "must differ from data_stream")
        self._check_client_certificate()
        return self

    def _check_client_certificate(self) -> None:
        _check_one_source(self, ("client_key_password",))
        if self.client_key is not None and self.client_cert is None:
            raise KeyProblem("client_key", "a client key without client_cert; set client_cert too")
        password_key = _given_key(self, "client_key_password")
        if password_key is not None and self.client_cert is None:
            raise KeyProblem(password_key, "a key password without client_cert/client_key")
        plain = [host for host in self.hosts if not host.startswith("https://")]
        if self.client_cert is not None and plain:
            # The client refuses TLS options on a plain http:// node (a ValueError at start).
            raise KeyProblem("client_cert", f"needs https:// hosts; {plain[0]} is not one")
        if self.client_cert is not None and self.ssl_assert_fingerprint is not None:
            # The client pins a fingerprint with a TLS context of its own, which carries no
            # client certificate: the cluster would never see it.
            raise KeyProblem(
                "client_cert",
                "cannot be combined with ssl_assert_fingerprint (the Elasticsearch client "
                "presents no client certificate when it pins a fingerprint); use ca_certs",
            )


_SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")


def cloud_id_host(cloud_id: str) -> str:
    """The Elasticsearch URL an Elastic Cloud ID names, decoded as the official clients do.

    `<name>:<base64 of "<domain>[:<port>]$<es id>$<kibana id>">` is `https://<es id>.<domain>:<port>`
    (port 443 when none): elastic-transport-python's `parse_cloud_id`, then
    elasticsearch-py's `cloud_id_to_node_configs`, which refuses an ID without the
    Elasticsearch part. Raises ValueError with a sentence for the user.
    """
    from elastic_transport.client_utils import parse_cloud_id

    try:
        address = parse_cloud_id(cloud_id).es_address
    except ValueError:
        address = None
    if address is None or not all(address):
        raise ValueError(
            "is not a valid Elastic Cloud ID (expected <name>:<base64 text>, as the Cloud "
            "console shows it, naming the Elasticsearch host)"
        )
    host, port = address
    return f"https://{host}:{port}"


def _given_key(model: BaseModel, secret: str) -> str | None:
    """`secret` or `secret_file`, whichever is set (None: neither)."""
    if getattr(model, secret) is not None:
        return secret
    return secret + "_file" if getattr(model, secret + "_file") is not None else None


def _check_one_source(model: BaseModel, secrets: tuple[str, ...]) -> None:
    for key in secrets:
        if getattr(model, key) is not None and getattr(model, key + "_file") is not None:
            raise KeyProblem(key + "_file", f"give {key} or {key}_file, not both")


def _check_password_has_username(model: BaseModel, username: str | None) -> None:
    password_key = _given_key(model, "password")
    if username is None and password_key is not None:
        raise KeyProblem(password_key, "a password without username; set username too")


class StorageConfig(_Closed):
    path: str = Field(default="/var/lib/shipper", description="Directory for buffer and state.")
    fsync: Literal["always", "batch", "never"] = Field(
        default="batch",
        description="always: fsync every append; batch: fsync before checkpoints are saved; "
        "never: leave it to the OS.",
    )
    max_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    segment_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    checkpoint_interval_s: float = Field(default=1.0, gt=0)


class MetricsConfig(_Closed):
    listen: str | None = Field(default="0.0.0.0:9108", description="host:port, or null to disable.")
    per_container: bool = Field(
        default=False,
        description="Also export series labelled by container name (one per followed "
        "container: checkpoint lag, time since last read).",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            _host, sep, port = value.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError(f"{value!r} is not host:port")
        return value


class LogConfig(_Closed):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


_LABEL_SELECTOR = re.compile(r"^[^=!\s]+(?:(?:=|!=)[^\s]*)?$")
RedactionPreset = Literal[
    "key_value", "authorization", "aws_access_key", "credit_card", "url_password"
]
REDACTION_PRESETS: tuple[RedactionPreset, ...] = get_args(RedactionPreset)

# Top-level fields the shipper writes itself: JSON targets, static fields and a root-target
# JSON document must not land on them (the encoder would merge or overwrite them silently).
SHIPPER_FIELD_ROOTS = frozenset(
    {
        "@timestamp",
        "message",
        "log",
        "event",
        "tags",
        "container",
        "data_stream",
        "host",
        "agent",
        "ecs",
        "stream",
    }
)
_DOTTED_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


def _label_selectors(selectors: list[str]) -> list[str]:
    for selector in selectors:
        if not _LABEL_SELECTOR.match(selector):
            raise ValueError(f"{selector!r} is not 'key', 'key=value' or 'key!=value'")
    return selectors


class SelectionRule(_Closed):
    """Matches a container when every condition given matches (AND); at least one is required."""

    labels: list[str] = Field(
        default_factory=list,
        description="Label selectors, all must hold: 'key' (present), 'key=value', 'key!=value'. "
        "On Kubernetes (source cri) they see the pod's labels.",
    )
    name: str | None = Field(
        default=None,
        description="Glob on the container name (source cri: its name in the pod spec).",
    )
    image: str | None = Field(default=None, description="Glob on the image reference.")
    compose_project: str | None = Field(
        default=None, description="Glob on the com.docker.compose.project label."
    )
    namespace: str | None = Field(
        default=None,
        description="Glob on the container's Kubernetes namespace (its pod's; a Docker "
        "container's io.kubernetes.pod.namespace label).",
    )

    _selectors = field_validator("labels")(_label_selectors)

    @model_validator(mode="after")
    def _not_empty(self) -> SelectionRule:
        # An empty rule would match every container: almost surely a typo in an exclude list.
        if not (self.labels or self.name or self.image or self.compose_project or self.namespace):
            raise ValueError(
                "a rule needs at least one of labels, name, image, compose_project, namespace"
            )
        return self


class SelectionConfig(_Closed):
    mode: Literal["all", "opt_in"] = Field(
        default="all",
        description="all: ship every container not excluded; opt_in: ship only containers "
        "labelled shipper.enable=true or matching an include rule.",
    )
    include: list[SelectionRule] = Field(
        default_factory=list,
        description="If not empty, only containers matching one of these (or labelled "
        "shipper.enable=true) are shipped.",
    )
    exclude: list[SelectionRule] = Field(
        default_factory=list, description="Containers matching one of these are never shipped."
    )
    ship_own_container: bool = Field(
        default=False, description="Ship the shipper's own logs (off: avoids feedback loops)."
    )


class ContainerRule(_Closed):
    """Base of rules scoped by container: no image and no name means every container."""

    image: str | None = Field(default=None, description="Glob on the image reference.")
    name: str | None = Field(default=None, description="Glob on the container name.")


class MultilineRule(ContainerRule):
    preset: Literal["java", "python", "go"] | None = Field(
        default=None, description="Built-in joiner: java, python or go (panics)."
    )
    pattern: str | None = Field(
        default=None, description="Regex (searched anywhere in the line), Filebeat semantics."
    )
    negate: bool = Field(default=False, description="Invert the pattern's result.")
    match: Literal["after", "before"] = Field(
        default="after",
        description="after: lines matching (pattern XOR negate) are appended to the previous "
        "line; before: such lines are prepended to the next line that does not match.",
    )

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return value if value is None else _check_regex(value)

    @model_validator(mode="after")
    def _one_kind(self) -> MultilineRule:
        if (self.preset is None) == (self.pattern is None):
            raise ValueError("give exactly one of preset or pattern")
        return self


class MultilineConfig(_Closed):
    rules: list[MultilineRule] = Field(
        default_factory=list,
        description="First rule matching the container applies; container labels override.",
    )
    max_lines: int = Field(
        default=500, ge=1, description="Lines per event; more are cut into a new event."
    )
    max_bytes: int = Field(
        default=1024 * 1024, ge=1, description="UTF-8 bytes per event; more are cut likewise."
    )
    flush_timeout_s: float = Field(
        default=1.0, gt=0, description="An event idle this long is sent without waiting."
    )


class JsonRule(ContainerRule):
    mode: Literal["on", "off", "auto"] = Field(description="JSON decoding for these containers.")


class JsonConfig(_Closed):
    mode: Literal["on", "off", "auto"] = Field(
        default="auto",
        description="on: every line should be a JSON object; auto: lines starting with '{'; "
        "off. Rules, then the label shipper.json=true|false|auto, override it.",
    )
    rules: list[JsonRule] = Field(default_factory=list, description="First match wins.")
    target: str = Field(
        default="json",
        description="Dotted field the object's keys go under; '' puts them at the root (keys "
        "that clash with the shipper's own fields then go under 'json').",
    )
    max_depth: int = Field(default=10, ge=1, description="Deeper objects stay plain text.")
    max_fields: int = Field(default=100, ge=1, description="More keys (all levels): plain text.")
    keep_original: bool = Field(
        default=False,
        description="Keep the line as written in event.original (stored, not indexed) when "
        "it is decoded into fields.",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value and (
            not _DOTTED_PATH.fullmatch(value) or value.split(".")[0] in SHIPPER_FIELD_ROOTS
        ):
            raise ValueError("must be '' or a dotted path outside the shipper's own fields")
        return value


class RedactionRule(_Closed):
    id: str = Field(min_length=1, description="Names the rule in metrics and the record count.")
    pattern: str = Field(description="Regex whose matches are replaced.")
    replacement: str | None = Field(
        default=None, description="Replacement (\\1 and \\g<name> allowed); default: mask."
    )

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        return _check_regex(value)

    @model_validator(mode="after")
    def _template(self) -> RedactionRule:
        if self.replacement is not None:
            # re only checks group references when it substitutes: force one now (the empty
            # alternative always matches) so a bad \3 fails at startup, not on a live line.
            try:
                re.compile(self.pattern + "\n|").sub(self.replacement, "")
            except (re.error, IndexError) as exc:
                raise KeyProblem("replacement", f"invalid replacement: {exc}") from None
        return self


class RedactionConfig(_Closed):
    presets: list[RedactionPreset] = Field(
        default_factory=lambda: list(REDACTION_PRESETS),
        description="Built-in maskers, all on by default; [] turns them all off.",
    )
    rules: list[RedactionRule] = Field(
        default_factory=list, description="Own rules, applied after the presets."
    )
    mask: str = Field(default="[REDACTED]", min_length=1, description="What a secret becomes.")


RATE_LIMIT_DROP_REASON = "rate_limit"  # shipper_records_dropped_total{reason} of quota drops


class DropRule(ContainerRule):
    id: str = Field(min_length=1, description="Names the rule in metrics.")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == RATE_LIMIT_DROP_REASON:
            raise ValueError(
                f"{value!r} is the reason rate limits drop with in "
                "shipper_records_dropped_total; choose another id"
            )
        return value

    message_pattern: str | None = Field(
        default=None, description="Regex searched in the final message (after JSON decoding)."
    )
    stream: Literal["stdout", "stderr"] | None = Field(
        default=None, description="Only records of this stream."
    )

    @field_validator("message_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return value if value is None else _check_regex(value)

    @model_validator(mode="after")
    def _has_condition(self) -> DropRule:
        if self.message_pattern is None and self.stream is None:
            raise ValueError("give message_pattern, stream or both")
        return self


class RateLimitRule(_Closed):
    """A per-container quota. Matches like a selection rule (every condition given must
    hold); a rule without conditions applies to every container. First match wins."""

    id: str = Field(min_length=1, description="Names the rule in logs and summary records.")
    labels: list[str] = Field(
        default_factory=list,
        description="Label selectors, all must hold: 'key' (present), 'key=value', 'key!=value'.",
    )
    name: str | None = Field(default=None, description="Glob on the container name.")
    image: str | None = Field(default=None, description="Glob on the image reference.")
    compose_project: str | None = Field(
        default=None, description="Glob on the com.docker.compose.project label."
    )
    namespace: str | None = Field(
        default=None, description="Glob on the container's Kubernetes namespace."
    )
    lines_per_s: float | None = Field(
        default=None, gt=0, description="Lines (after multiline joining) per second."
    )
    bytes_per_s: int | None = Field(default=None, gt=0, description="Bytes of lines per second.")
    burst_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds of quota that may be used at once (the bucket holds "
        "lines_per_s x burst_s lines and bytes_per_s x burst_s bytes).",
    )
    action: Literal["pause", "drop"] = Field(
        default="pause",
        description="pause: stop reading while over quota (the runtime keeps the lines); "
        "drop: drop lines over quota, counted, with one summary record per interval.",
    )

    _selectors = field_validator("labels")(_label_selectors)

    @model_validator(mode="after")
    def _has_a_limit(self) -> RateLimitRule:
        if self.lines_per_s is None and self.bytes_per_s is None:
            raise KeyProblem("lines_per_s", "give lines_per_s, bytes_per_s or both")
        return self


class RateLimitConfig(_Closed):
    rules: list[RateLimitRule] = Field(
        default_factory=list,
        description="Per-container quotas; the label shipper.rate_limit tightens them.",
    )
    summary_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="action drop: one summary record per container and interval of this "
        "length (by the lines' own timestamps) says how many lines were dropped.",
    )


class ProcessingConfig(_Closed):
    """Per-record processing (selection, multiline, JSON, metadata, redaction); see issue 5."""

    max_line_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="A longer line is cut at a character boundary and flagged `truncated`.",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    multiline: MultilineConfig = Field(default_factory=MultilineConfig)
    json_logs: JsonConfig = Field(default_factory=JsonConfig)
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    drop: list[DropRule] = Field(
        default_factory=list, description="A record matching any rule is dropped (counted)."
    )
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    env_allowlist: list[str] = Field(
        default_factory=list,
        description="Container environment variables shipped as container.env.<NAME>; never "
        "all, since environments often hold secrets.",
    )
    fields: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Static fields by dotted path added to every record (labels "
        "shipper.field.<path>=value add per container ones).",
    )

    @field_validator("fields")
    @classmethod
    def _field_paths(cls, fields: dict[str, Any]) -> dict[str, Any]:
        for path in fields:
            if not _DOTTED_PATH.fullmatch(path):
                raise ValueError(f"{path!r} is not a dotted field path")
            if path.split(".")[0] in SHIPPER_FIELD_ROOTS:
                raise ValueError(f"{path!r} would overwrite a field the shipper sets")
        return fields


class KibanaConfig(_Closed):
    """Optional: a data view over the shipper's data streams, created at start if missing."""

    url: str | None = Field(default=None, description="Kibana base URL; null: no setup.")
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    api_key: str | None = None
    api_key_file: str | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    data_view_id: str = Field(default="shipper-logs", min_length=1)
    data_view_name: str = Field(default="Docker logs (shipper)", min_length=1)
    data_view_pattern: str = Field(default="logs-*", min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> KibanaConfig:
        _check_one_source(self, ("password", "api_key"))
        api_key = _given_key(self, "api_key")
        if api_key is not None and self.username is not None:
            # Either would be sent silently in place of the other: say so instead.
            raise KeyProblem(
                api_key, "choose one way to authenticate, not username/password and api_key"
            )
        _check_password_has_username(self, self.username)
        return self


class CriConfig(_Closed):
    """The CRI log source (`source: cri`): kubelet's log files and the runtime's CRI API."""

    socket: str = Field(
        default="auto",
        description="The container runtime's CRI socket (a path); auto: containerd's "
        "/run/containerd/containerd.sock, else CRI-O's /var/run/crio/crio.sock, whichever "
        "answers.",
    )
    log_directory: str = Field(
        default="/var/log/pods",
        description="Where this process sees kubelet's pod log directory (mounted read-only).",
    )
    annotations: list[str] = Field(
        default_factory=list,
        description="Globs of the pod annotations shipped as kubernetes.annotations.*; [] "
        "ships none (shipper.* annotations are read as hints either way).",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of each CRI API call.")

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        path = value.removeprefix("unix://")
        if value != "auto" and not path.startswith("/"):
            raise ValueError("must be auto or the absolute path of a unix socket")
        return path

    @field_validator("log_directory")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class Config(_Closed):
    source: Literal["auto", "docker", "cri"] = Field(
        default="auto",
        description="Where container logs come from. docker: the Docker (or Podman) API; cri: "
        "kubelet's CRI log files with the runtime's CRI API (Kubernetes on containerd or "
        "CRI-O); auto: cri when a CRI runtime answers, else docker. The start log says which "
        "and why.",
    )
    output: Literal["elasticsearch", "console"] = "elasticsearch"
    host_name: str | None = Field(default=None, description="host.name; defaults to the host's.")
    shutdown_timeout_s: float = Field(default=10.0, ge=0)
    start_at: str = Field(
        default="beginning",
        description="Where containers without a position begin at the first start on this "
        "storage: beginning, now, or a duration back from now (10m, 2h, 7d).",
    )
    docker: DockerConfig = Field(default_factory=DockerConfig)
    cri: CriConfig = Field(default_factory=CriConfig)
    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    kibana: KibanaConfig = Field(default_factory=KibanaConfig)

    _start_at = field_validator("start_at")(check_start_at)
