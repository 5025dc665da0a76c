"""Run a catalog check the way the agent does, against recorded tool output.

Each check runs as a real subprocess of the system `python3` (the interpreter its
signed statement names, found on the agent's fixed PATH) with a clean environment and
its parameters both in AAMI_PARAMS / AAMI_PARAM_<NAME> and on stdin
(docs/script-contract.md). The tools it calls are stand-in executables first (and
alone) on PATH that replay recorded real outputs, so "tool missing" is simply a PATH
without it. The output must pass a strict Prometheus text parser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from aami.agent.metrics import parse_script_metrics

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "checks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON3 = shutil.which("python3", path=AGENT_PATH) or "/usr/bin/python3"

Series = tuple[str, tuple[tuple[str, str], ...]]

_STUB = '''#!{python}
# Stand-in for {tool}: replays recorded output (tests/checks/replay.py).
import csv, io, json, sys
RULES = json.loads({rules!r})
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(["{tool}", *args]) + "\\n")
joined = " ".join(args)
for rule in RULES:
    if all(part in joined for part in rule.get("match", [])):
        break
else:
    sys.stderr.write("stand-in {tool}: no recording for: " + joined + "\\n")
    sys.exit(97)
if "query_csv" in rule:
    # nvidia-smi --query-gpu=a,b --format=csv,noheader,nounits over a full recording.
    rows = list(csv.reader(open(rule["query_csv"]), skipinitialspace=True))
    names = [h.split(" [")[0].strip() for h in rows[0]]
    wanted = [a for a in args if a.startswith("--query-gpu=")][0].split("=", 1)[1].split(",")
    for name in wanted:
        if name not in names:
            print('Field "%s" is not a valid field to query.' % name)
            sys.exit(2)
    for row in rows[1:]:
        cells = []
        for name in wanted:
            cell = row[names.index(name)].strip()
            unit = rows[0][names.index(name)].partition(" [")[2].rstrip("]")
            if unit and cell.endswith(" " + unit):
                cell = cell[: -len(unit) - 1]
            cells.append(cell)
        print(", ".join(cells))
    sys.exit(0)
if "stdout_file" in rule:
    sys.stdout.write(open(rule["stdout_file"]).read())
sys.stdout.write(rule.get("stdout", ""))
sys.stderr.write(rule.get("stderr", ""))
sys.exit(rule.get("exit", 0))
'''


def stub(bin_dir: Path, tool: str, rules: list[dict[str, Any]]) -> Path:
    """An executable `tool` in bin_dir answering by the first rule whose `match`
    substrings all occur in its arguments; every call is logged to bin_dir/calls.log."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for rule in rules:
        for key in ("stdout_file", "query_csv"):
            if key in rule:
                rule[key] = str(rule[key])
    path = bin_dir / tool
    path.write_text(_STUB.format(python=PYTHON3, tool=tool, rules=json.dumps(rules),
                                 log=str(bin_dir / "calls.log")))
    path.chmod(0o755)
    return path


def calls(bin_dir: Path) -> list[list[str]]:
    log = bin_dir / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    series: dict[Series, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, /, **labels: str) -> float:
        """The one series of `name` whose labels include `labels`."""
        found = [v for (n, ls), v in self.series.items()
                 if n == name and set(labels.items()) <= set(ls)]
        assert len(found) == 1, f"{name}{labels}: {len(found)} series in\n{self.stdout}"
        return found[0]

    def names(self) -> set[str]:
        return {name for name, _ in self.series}

    def has(self, name: str, /, **labels: str) -> bool:
        return any(n == name and set(labels.items()) <= set(ls) for n, ls in self.series)


def run_check(check: str, params: dict[str, Any] | None = None, *, bin_dir: Path | None = None,
              env: dict[str, str] | None = None, expect_metrics: bool = True,
              stdin_only: bool = False, timeout: float = 30) -> Run:
    """`stdin_only`: parameters only as JSON on stdin (the old cron runner's way)."""
    params = params or {}
    if bin_dir:
        bin_dir.mkdir(parents=True, exist_ok=True)
    environment = {
        "PATH": str(bin_dir) if bin_dir else "/nonexistent",
        "AAMI_PARAMS": json.dumps(params),
        "AAMI_SCRIPT_NAME": check,
        "AAMI_HOSTNAME": "node-01",
    }
    for name, value in params.items():
        if isinstance(value, bool):
            environment[f"AAMI_PARAM_{_env_name(name)}"] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            environment[f"AAMI_PARAM_{_env_name(name)}"] = str(value)
    environment.update(env or {})
    if stdin_only:
        environment = {k: v for k, v in environment.items() if not k.startswith("AAMI_PARAM")}
    done = subprocess.run(
        [PYTHON3, str(CHECKS / check / "check.py")], input=json.dumps(params),
        capture_output=True, text=True, env=environment, timeout=timeout,
        cwd=str(bin_dir or ROOT), check=False,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    if expect_metrics:
        assert done.returncode == 0, f"{check} exited {done.returncode}: {done.stderr}"
        run.series, run.types = strict_parse(done.stdout)
    return run


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def strict_parse(text: str) -> tuple[dict[Series, float], dict[str, str]]:
    """Parse with prometheus_client, then hold the output to the catalog's rules."""
    families = list(text_string_to_metric_families(text))
    assert families, "no metrics printed"
    helps = set(re.findall(r"^# HELP (\S+) \S", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    series: dict[Series, float] = {}
    for family in families:
        # prometheus_client names a counter family without its `_total`.
        written = family.name + "_total" if family.type == "counter" else family.name
        assert written in helps, f"{written}: no HELP line"
        assert written in types, f"{written}: no TYPE line"
        assert family.type != "unknown", f"{family.name}: untyped"
        for sample in family.samples:
            assert sample.name.startswith("aami_"), sample.name
            assert not sample.name.startswith("aami_agent_"), f"{sample.name}: agent's prefix"
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in series, f"duplicate series {key}"
            series[key] = sample.value
    # The agent must take the same text as metrics (not as plain output).
    parsed = parse_script_metrics(text)
    assert parsed is not None and len(parsed) == len(series), "the agent's parser disagrees"
    return series, types
