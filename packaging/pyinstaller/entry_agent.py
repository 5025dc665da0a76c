"""PyInstaller entry point of the `aami-agent` binary (same as the console script)."""

import sys

from aami.agent.cli import main

sys.exit(main())
