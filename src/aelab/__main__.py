"""`python -m aelab ...` runs the command line (see `aelab.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
