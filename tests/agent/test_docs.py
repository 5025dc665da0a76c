"""The docs stay true: every config key is documented, and every example script in
docs/script-contract.md runs through the real executor and behaves as documented."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from aami.agent.config import config_keys
from aami.agent.executor import ExecutionRequest, build_env, execute
from aami.agent.metrics import parse_script_metrics

DOCS = Path(__file__).parents[2] / "docs"
EXAMPLE = re.compile(r"```(\S+) example=(\S+) params=(\{.*?\})\n(.*?)```", re.S)


def examples() -> list[tuple[str, str, dict, str]]:
    text = (DOCS / "script-contract.md").read_text()
    return [(name, interp, json.loads(params), body)
            for interp, name, params, body in EXAMPLE.findall(text)]


def test_every_config_key_is_in_the_operator_guide() -> None:
    guide = (DOCS / "agent.md").read_text()
    for section, keys in config_keys().items():
        for key in keys:
            assert f"`{section}.{key}`" in guide, f"{section}.{key} is not documented"


def test_every_environment_variable_is_in_the_contract() -> None:
    contract = (DOCS / "script-contract.md").read_text()
    env = build_env(ExecutionRequest("i", "n", "1", b"", "bash", {}, 1))
    for name in env:
        assert f"`{name}`" in contract or name in contract, name


def test_there_are_examples() -> None:
    assert {name for name, *_ in examples()} == {"disk-usage", "disk-usage-py", "gpu-count"}


@pytest.mark.parametrize(("name", "interpreter", "params", "body"), examples(),
                         ids=[e[0] for e in examples()])
def test_example_script_runs(name: str, interpreter: str, params: dict, body: str) -> None:
    req = ExecutionRequest("00000000-0000-4000-8000-000000000000", name, "1.0.0",
                           body.encode(), interpreter, params, 30, hostname="docs")
    result = asyncio.run(execute(req, output_limit=65536, kill_grace=1))
    assert result.success, (result.stdout, result.stderr, result.error_message)
    samples = parse_script_metrics(result.stdout)
    assert samples, f"{name} should print metrics, printed {result.stdout!r}"
