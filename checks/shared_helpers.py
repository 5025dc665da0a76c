"""The helpers every catalog check carries: parameters from the agent, and Prometheus
text with HELP and TYPE and no duplicate series.

A signed script is one file, so each check holds its own copy between the `shared
helpers` and `the check` marker lines. This file is the one to edit; then
`python checks/build_catalog.py --sync-helpers` copies it into every check. The suite
fails, and `make catalog` refuses to sign, while any copy differs.
"""

from __future__ import annotations

import json
import os
import sys

# ----------------------------------------------------------------- shared helpers


def load_params() -> dict:
    """AAMI_PARAMS, else JSON on stdin (the agent sends both), else no parameters."""
    raw = os.environ.get("AAMI_PARAMS")
    if raw is None and not sys.stdin.isatty():
        raw = sys.stdin.read()
    try:
        params = json.loads(raw) if raw and raw.strip() else {}
    except ValueError as exc:
        sys.exit(f"parameters: not valid JSON ({exc})")
    if not isinstance(params, dict):
        sys.exit("parameters: must be a JSON object")
    return params


class Metrics:
    """Families in first-use order, each with HELP and TYPE; no duplicate series."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, dict]] = {}

    def add(self, name: str, kind: str, text: str, value: float, /, **labels: str) -> None:
        family = self.families.setdefault(name, (kind, text, {}))
        family[2][tuple(sorted(labels.items()))] = value

    def render(self) -> str:
        lines = []
        for name, (kind, text, series) in self.families.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in series.items():
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{inner}}} {_number(value)}" if inner
                             else f"{name} {_number(value)}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
