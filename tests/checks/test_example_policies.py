"""examples/policies/gpu-nodes.yaml: parsed by the project's policy-file parser, and each
policy fits the check it runs (its parameters validate against the check's schema, its
run_as is the one the catalog signs that check for)."""

from __future__ import annotations

import json

import yaml

from aami import trust
from aami.policyfile import parse_policy_file
from tests.checks.replay import CHECKS, ROOT

EXAMPLE = ROOT / "examples" / "policies" / "gpu-nodes.yaml"


def test_every_catalog_check_has_a_gpu_nodes_policy_that_fits_it() -> None:
    policies = parse_policy_file(yaml.safe_load(EXAMPLE.read_text()))
    names = sorted(p.parent.name for p in CHECKS.glob("*/manifest.json"))
    assert sorted(p["script"] for p in policies) == names
    for policy in policies:
        assert policy["scope"] == "group" and policy["group"] == "gpu-nodes"
        folder = CHECKS / policy["script"]
        schema = json.loads((folder / "schema.json").read_text())
        trust.validate_params(schema, {**trust.schema_defaults(schema), **policy["params"]})
        manifest = json.loads((folder / "manifest.json").read_text())
        expected = "root" if manifest["run_as"] == "root" else "aami-runner"
        assert policy["run_as"] == expected, policy["name"]
