"""`shipper check-config`: validate, then print the effective config as YAML, secrets masked.

"Effective" means as `shipper run` would use it: built-in defaults, the file with its
`${VAR}` references resolved, then the SHIPPER_* environment. Beyond the schema it makes the
start-time checks `run` makes (`shipper.commands.preflight`: secret files, CA bundles, Docker
TLS files), without connecting anywhere, and prints the warnings `run` would log at start
(TLS verification turned off).
"""

from __future__ import annotations

import sys

import yaml

from shipper.commands import preflight
from shipper.config import Config, masked


def main(config: Config, path: str | None) -> int:
    preflight.check(config)  # ConfigError → exit 2 in cli
    source = path if path is not None else "built-in defaults"
    sys.stdout.write(f"# Effective configuration ({source} + SHIPPER_* environment).\n")
    sys.stdout.write("# Secrets are shown as ***.\n")
    sys.stdout.write(yaml.safe_dump(masked(config), sort_keys=False, allow_unicode=True))
    for warning in preflight.tls_warnings(config):
        print(f"shipper: warning: {warning}", file=sys.stderr)
    print(f"shipper: the configuration is valid ({source}).", file=sys.stderr)
    return 0
