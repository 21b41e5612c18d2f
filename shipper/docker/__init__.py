"""Docker Engine API (Docker Engine and Podman): the read-only client and the pure parsers of
its logs API body and json-file logs. The source built on it is `shipper.sources.docker`."""
