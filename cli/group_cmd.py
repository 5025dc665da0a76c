"""What an operator sets up before handing out bootstrap tokens, over the Admin API:

    aami group create NAME [--description TEXT] [--priority N]
    aami group list
    aami target create HOSTNAME [--group NAME ...] [--label KEY=VALUE ...]
    aami bootstrap-token create [--group NAME] [--max-uses N] [--expires 7d]
                                [--allow-rebind] [--name NAME] [--hostname NODE]

A bootstrap token names the group new nodes join, so the group comes first
(docs/install.md section 3). A target made in advance (to give it policies before its
node exists) is claimed with a token made for its hostname. `bootstrap-token create`
prints the secret alone on stdout, as `aami-server bootstrap-token create` does on the
server host.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from aami.cli.api_client import ApiClient, ApiError
from aami.cli.errors import OperationFailed, UsageError
from aami.cli.script_cmd import whole_seconds


def register(sub: argparse._SubParsersAction,
             add_flags: Callable[[argparse.ArgumentParser], None],
             parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `group` and `bootstrap-token`; `add_flags` adds --server/--token/--ca-file."""
    group = sub.add_parser("group", help="target groups on the server")
    g_sub = group.add_subparsers(dest="group_command", required=True, parser_class=parser_class)
    create = g_sub.add_parser("create", help="create a group")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="")
    create.add_argument("--priority", type=int, default=0,
                        help="among a target's groups the higher priority wins (default 0)")
    add_flags(create)
    create.set_defaults(remote=create_group)
    listing = g_sub.add_parser("list", help="list groups")
    add_flags(listing)
    listing.set_defaults(remote=list_groups)

    target = sub.add_parser("target", help="targets made before their node registers")
    t_sub = target.add_subparsers(dest="target_command", required=True,
                                  parser_class=parser_class)
    tcreate = t_sub.add_parser("create", help="create a target in advance")
    tcreate.add_argument("hostname", metavar="HOSTNAME")
    tcreate.add_argument("--group", action="append", default=[], metavar="NAME",
                         help="a group it joins (repeat for more)")
    tcreate.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                         help="a label (repeat for more)")
    add_flags(tcreate)
    tcreate.set_defaults(remote=create_target)

    boot = sub.add_parser("bootstrap-token", help="bootstrap tokens for new nodes")
    b_sub = boot.add_subparsers(dest="boot_command", required=True, parser_class=parser_class)
    bcreate = b_sub.add_parser("create", help="print a new bootstrap token once")
    bcreate.add_argument("--group", help="group new targets join (create it first)")
    bcreate.add_argument("--max-uses", type=int, default=1)
    bcreate.add_argument("--expires", default="30d", help="lifetime, e.g. 30d, 12h")
    bcreate.add_argument("--name", default="")
    bcreate.add_argument("--allow-rebind", action="store_true",
                         help="may take over a hostname that already has an agent")
    bcreate.add_argument("--hostname",
                         help="only this node may register with it (and claim its target "
                              "if created in advance)")
    add_flags(bcreate)
    bcreate.set_defaults(remote=create_bootstrap_token)


def create_group(args: argparse.Namespace, client: ApiClient) -> int:
    body = {"name": args.name, "description": args.description, "priority": args.priority}
    try:
        reply = client.post("/groups", body)
    except ApiError as exc:
        if exc.status == 409:
            raise OperationFailed(f"group {args.name!r} already exists (aami group list)"
                                  ) from None
        raise
    print(f"created group {reply.body['name']} (id {reply.body['id']})")
    return 0


def list_groups(args: argparse.Namespace, client: ApiClient) -> int:
    rows = client.get("/groups", limit="500").body["data"]
    for row in rows:
        print(f"{row['id']}\t{row['name']}\tpriority {row['priority']}")
    return 0


def create_target(args: argparse.Namespace, client: ApiClient) -> int:
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label: expected KEY=VALUE, got {item!r}")
        labels[key] = value
    body: dict[str, object] = {"hostname": args.hostname, "groups": args.group,
                               "labels": labels}
    try:
        reply = client.post("/targets", body)
    except ApiError as exc:
        if exc.status == 409:
            raise OperationFailed(f"target {args.hostname!r} already exists") from None
        raise
    print(f"created target {reply.body['hostname']} (id {reply.body['id']}); claim it with "
          f"aami bootstrap-token create --hostname {reply.body['hostname']}")
    return 0


def create_bootstrap_token(args: argparse.Namespace, client: ApiClient) -> int:
    if args.max_uses < 1:
        raise UsageError("--max-uses: must be at least 1")
    body: dict[str, object] = {
        "name": args.name, "max_uses": args.max_uses,
        "expires_in_seconds": whole_seconds(args.expires, "--expires"),
        "allow_rebind": args.allow_rebind,
    }
    if args.group:
        body["group"] = args.group
    if args.hostname is not None:  # "" (an unset $NODE) must not mean "any node"
        body["hostname"] = args.hostname
    try:
        reply = client.post("/bootstrap-tokens", body)
    except ApiError as exc:
        if exc.status == 400 and isinstance(exc.details, dict) and \
                exc.details.get("field") == "body.hostname":
            raise UsageError(f"--hostname: {args.hostname!r} is not a hostname (letters, "
                             "digits, '.' and '-', at most 253 characters)") from None
        raise
    print(reply.body["token"])
    return 0
