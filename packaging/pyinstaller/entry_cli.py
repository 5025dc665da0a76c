"""PyInstaller entry point of the `aami` binary (same as the console script)."""

import sys

from aami.cli.main import main

sys.exit(main())
