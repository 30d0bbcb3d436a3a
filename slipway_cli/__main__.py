"""`python -m slipway_cli`: the `slipway` command without its console script."""

import sys

from slipway_cli import main

sys.exit(main())
