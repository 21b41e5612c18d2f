# shipper: ships Docker container logs into Elasticsearch.
#
# Build:  docker build -t shipper:0.1.0 .
#         (offline: scripts/build-image builds the wheels on the host into dist/wheels and a
#         local Debian base image, then builds this file with --build-arg BASE_IMAGE=...)
# Run:    docker run -d --name shipper \
#           --group-add "$(stat -c %g /var/run/docker.sock)" \
#           -v /var/run/docker.sock:/var/run/docker.sock:ro \
#           -v shipper-data:/var/lib/shipper \
#           -v "$PWD/shipper.yml:/etc/shipper/shipper.yml:ro" \
#           --stop-timeout 30 shipper:0.1.0
#
# The base image is pinned by argument. It must provide python3 (with the venv module in the
# build stage) at the same path in both stages, since the virtualenv links to it.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: install the shipper and its dependencies into a self-contained virtualenv ----
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
# Wheels in dist/wheels (built on the host by scripts/build-image) make the build work with
# no network; without them pip builds and fetches everything from the package index.
RUN python3 -m venv /opt/shipper \
 && if ls dist/wheels/shipper-*.whl >/dev/null 2>&1; then \
        /opt/shipper/bin/pip install --no-index --find-links dist/wheels shipper; \
    else \
        # A C compiler for the hot path (shipper/_native.c); without one the build still
        # succeeds and the shipper runs its pure-Python path, only slower.
        (command -v gcc >/dev/null || (apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev) || true) \
        && /opt/shipper/bin/pip install .; \
    fi \
 && /opt/shipper/bin/pip uninstall --yes pip \
 && rm -rf /opt/shipper/bin/[Aa]ctivate* \
 && /opt/shipper/bin/shipper --version \
 && /opt/shipper/bin/python -c 'import shipper.native as n; print("native hot path:", n.ACTIVE)'

# ---- runtime: the base image plus the virtualenv, running as an unprivileged user ----
FROM ${BASE_IMAGE}
# An ARG declared before the first FROM is only in scope for the FROM lines: re-declare it (it
# keeps the global value) or the base.name label below would be empty.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="shipper" \
      org.opencontainers.image.description="Ships every container's logs (Docker, Podman, Kubernetes) into Elasticsearch exactly once." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# uid/gid 10001 own the state directory. Reading the Docker socket (root:docker, 0660) needs
# the socket's group: `docker run --group-add "$(stat -c %g /var/run/docker.sock)"`, compose
# `user: "10001:${DOCKER_GID}"`, or a read-only socket proxy as docker.host.
RUN groupadd --system --gid 10001 shipper \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shipper --no-create-home \
        --shell /usr/sbin/nologin shipper \
 && mkdir -p /var/lib/shipper /etc/shipper \
 && chown 10001:10001 /var/lib/shipper \
 && chmod 0750 /var/lib/shipper

COPY --from=build /opt/shipper /opt/shipper
COPY deploy/docker/shipper.yml /etc/shipper/shipper.yml

ENV PATH=/opt/shipper/bin:$PATH \
    SHIPPER_CONFIG=/etc/shipper/shipper.yml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /var/lib/shipper
# Disk buffer and checkpoints: keep them across container replacements.
VOLUME ["/var/lib/shipper"]
# Prometheus /metrics, /healthz, /readyz (metrics.listen).
EXPOSE 9108

# SIGTERM makes the shipper stop reading, drain the pipeline into the disk buffer, flush
# what it can to Elasticsearch and save checkpoints within shutdown_timeout_s (default 10 s).
# Give it longer than that before SIGKILL: `docker run --stop-timeout 30`, compose
# `stop_grace_period: 30s`.
STOPSIGNAL SIGTERM
# /healthz answers 200 while the process is alive and its tasks are running. Set
# SHIPPER_HEALTHCHECK_URL when metrics.listen is not the default.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SHIPPER_HEALTHCHECK_URL', 'http://127.0.0.1:9108/healthz'), timeout=4)"]

ENTRYPOINT ["shipper"]
CMD ["run"]
