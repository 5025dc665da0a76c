"""`aami policy apply FILE.yaml [--dry-run]`: make the server's policies match the file.

Idempotent: each policy is looked up by name, created when missing, replaced (PUT)
only when a field differs, and otherwise left alone, so a second apply prints
"unchanged" for every line. Policies on the server that the file does not mention
are left alone (the file is not the whole world).
"""

from __future__ import annotations

import argparse
from typing import Any

from aami.cli.api_client import ApiClient
from aami.cli.errors import OperationFailed, UsageError
from aami.cli.files import read_json_or_yaml
from aami.policyfile import Change, PolicyFileError, parse_policy_file, plan


def apply(args: argparse.Namespace, client: ApiClient) -> int:
    try:
        wanted = parse_policy_file(read_json_or_yaml(args.file, "policy file"))
    except PolicyFileError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    existing = {p["name"]: fetch(client, p["name"]) for p in wanted}
    changes = plan(wanted, {k: v for k, v in existing.items() if v is not None})
    counts = {"create": 0, "update": 0, "unchanged": 0}
    for change in changes:
        if not args.dry_run:
            _execute(client, change)
        counts[change.action] += 1
        print(_line(change, args.dry_run))
    prefix = "dry run, nothing changed: " if args.dry_run else ""
    verb = "would be " if args.dry_run else ""
    print(
        f"{prefix}{counts['create']} {verb}created, {counts['update']} {verb}updated, "
        f"{counts['unchanged']} unchanged"
    )
    return 0


def fetch(client: ApiClient, name: str) -> dict[str, Any] | None:
    body = client.get("/policies", name=name).body
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise OperationFailed("server answered GET /policies without a `data` list")
    matches = [p for p in data if isinstance(p, dict) and p.get("name") == name]
    if len(matches) > 1:
        raise OperationFailed(f"server holds {len(matches)} policies named {name!r}")
    return matches[0] if matches else None


def _execute(client: ApiClient, change: Change) -> None:
    if change.action == "create":
        client.post("/policies", change.policy)
    elif change.action == "update":
        client.put(f"/policies/{change.existing_id}", change.policy)


def _line(change: Change, dry_run: bool) -> str:
    name = change.policy["name"]
    if change.action == "unchanged":
        return f"unchanged {name}"
    word = {"create": "created", "update": "updated"}[change.action]
    if dry_run:
        word = f"would {change.action}"
    detail = f" ({', '.join(change.fields)})" if change.fields else ""
    return f"{word} {name}{detail}"
