"""The CLI's two failure kinds, each mapped to its exit code in `cli.main`.

`UsageError` (exit 2): the operator must fix a flag, a file or a configuration value;
the message names it. `OperationFailed` (exit 1): the request was well-formed but the
operation failed: the server said no, a script was refused, the network was down.
"""

from __future__ import annotations


class CliError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


class UsageError(CliError):
    exit_code = 2


class OperationFailed(CliError):
    exit_code = 1
