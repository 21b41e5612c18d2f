"""One module per `shipper` subcommand; `shipper.cli` parses and dispatches to them."""
