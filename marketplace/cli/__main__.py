"""`python -m marketplace.cli` runs the `aaex` command."""

import sys

from .main import main

sys.exit(main())
