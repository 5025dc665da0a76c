"""Staged rollouts and explain, over the Admin API (docs/rollouts.md):

    aami rollout list [--policy ID] [--state STATE] [--json]
    aami rollout show ID [--json]
    aami rollout pause|resume|abort|promote ID
    aami explain HOSTNAME [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from aami.cli.api_client import ApiClient
from aami.cli.errors import OperationFailed, UsageError

STATES = ("running", "paused", "halted", "rolled_back", "completed", "aborted")
ACTIONS = ("pause", "resume", "abort", "promote")


def register(sub: argparse._SubParsersAction,
             add_flags: Callable[[argparse.ArgumentParser], None],
             parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `rollout` and `explain`; `add_flags` adds --server/--token/--ca-file."""
    rollout = sub.add_parser("rollout", help="staged rollouts of new script versions")
    r_sub = rollout.add_subparsers(dest="rollout_command", required=True,
                                   parser_class=parser_class)
    listing = r_sub.add_parser("list", help="list rollouts, newest first")
    listing.add_argument("--policy", type=int, help="only this policy id")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--json", action="store_true")
    add_flags(listing)
    listing.set_defaults(remote=list_rollouts)
    show = r_sub.add_parser("show", help="one rollout, with its failing targets")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true")
    add_flags(show)
    show.set_defaults(remote=show_rollout)
    for action in ACTIONS:
        act = r_sub.add_parser(action, help=f"{action} a rollout")
        act.add_argument("id", type=int, metavar="ID")
        add_flags(act)
        act.set_defaults(remote=act_on_rollout, action=action)

    explain = sub.add_parser("explain", help="why a node runs what it runs")
    explain.add_argument("hostname", metavar="HOSTNAME")
    explain.add_argument("--json", action="store_true")
    add_flags(explain)
    explain.set_defaults(remote=explain_target)


def _line(r: dict[str, Any]) -> str:
    ratio = "-" if r["failure_ratio"] is None else f"{r['failure_ratio']:.2f}"
    return (f"{r['id']}\tpolicy {r['policy_id']}\t{r['script']} {r['from_version'] or '-'} -> "
            f"{r['to_version']}\t{r['state']}\tstep {r['step'] + 1}/{len(r['steps'])} "
            f"({r['steps'][r['step']]} %)\t{r['targets_on_new']}/{r['targets_total']} on new"
            f"\tfailure ratio {ratio}")


def list_rollouts(args: argparse.Namespace, client: ApiClient) -> int:
    query = {"limit": "500"}
    if args.policy is not None:
        query["policy_id"] = str(args.policy)
    if args.state:
        query["state"] = args.state
    rows = client.get("/rollouts", **query).body["data"]
    if args.json:
        print(json.dumps(rows, indent=2))
    for row in rows if not args.json else []:
        print(_line(row))
    return 0


def show_rollout(args: argparse.Namespace, client: ApiClient) -> int:
    r = client.get(f"/rollouts/{args.id}").body
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(_line(r))
    print(f"runs: {r['runs_ok']} ok, {r['runs_failed']} failed; limit "
          f"{r.get('max_failure_ratio')}, on failure {r.get('on_failure')}")
    print(f"reason: {r['reason']}")
    print(f"started {r['started_at']}, updated {r['updated_at']}")
    for t in r.get("failing_targets", []):
        print(f"  failing: {t['hostname']} ({t['runs_failed']} of {t['runs']} runs failed)")
    return 0


def act_on_rollout(args: argparse.Namespace, client: ApiClient) -> int:
    r = client.post(f"/rollouts/{args.id}/{args.action}", {}).body
    print(f"rollout {r['id']}: {r['state']} ({r['reason']})")
    return 0


def _target_id(client: ApiClient, hostname: str) -> int:
    if not hostname or len(hostname) > 253:
        raise UsageError("HOSTNAME: must be 1 to 253 characters")
    rows = client.get("/targets", hostname=hostname, limit="500").body["data"]
    exact = [r for r in rows if r.get("hostname") == hostname]
    if not exact:
        raise OperationFailed(f"no target named {hostname!r}")
    return int(exact[0]["id"])


def explain_target(args: argparse.Namespace, client: ApiClient) -> int:
    data = client.get(f"/targets/{_target_id(client, args.hostname)}/explain").body
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    target = data["target"]
    groups = ", ".join(f"{g['name']} (priority {g['priority']})" for g in target["groups"])
    print(f"{target['hostname']} (target {target['id']}); groups: {groups or 'none'}")
    for item in data["policies"]:
        chosen = item["chosen"]
        print(f"\n{item['key']}: " + (f"policy {chosen['name']!r}" if chosen else "nothing"))
        for c in item["considered"]:
            where = f" {c['group']}" if c["group"] else ""
            print(f"  - {c['name']} [{c['scope']}{where}, priority {c['priority']}"
                  f"{'' if c['enabled'] else ', disabled'}]: {c['outcome']}")
        version = item["version"]
        if version:
            cohort = "" if version["rollout_id"] is None else (
                f"; rollout {version['rollout_id']}"
                + ("" if version["in_cohort"] is None else
                   (", in the cohort" if version["in_cohort"] else ", not in the cohort")))
            print(f"  version: {version['requested']} -> {version['resolved']}{cohort}")
            print(f"  params: {json.dumps(item['params'], sort_keys=True)}")
            print(f"  schedule: {json.dumps(item['schedule'], sort_keys=True)}")
    return 0
