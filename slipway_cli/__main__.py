import sys

from slipway_cli import main

sys.exit(main())
