"""`python -m shipper` is the same program as the `shipper` console script."""

from shipper.cli import main

raise SystemExit(main())
