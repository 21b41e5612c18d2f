"""The Docker source (Docker Engine and Podman): containers found through the Engine API's
events and list (`discovery`), each followed by one task (`follower`) through the logs API
or, where visible, its json-file log (`json_tail`). The API client and the stream formats
are in `shipper.docker`; what every source shares is in `shipper.sources`."""
