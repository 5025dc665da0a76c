"""PyInstaller entry point of the `aami-server` binary (same as the console script)."""

import sys

from aami.server.cli import main

sys.exit(main())
