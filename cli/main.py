"""`aami`: the operator's CLI (keys, signing, publishing, policies).

Exit codes: 0 success; 1 the operation failed (the server said no, a script was
refused, the server was unreachable); 2 usage or configuration error. Every error is
one line on stderr naming the flag, file or field; never a traceback.
`AAMI_SERVER`, `AAMI_TOKEN` and `AAMI_CA_FILE` stand in for `--server`, `--token`
and `--ca-file`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from aami.bundle import cli as bundle_cli
from aami.cli import change_cmd, group_cmd, keys_cmd, logsafe, policy_cmd, script_cmd
from aami.cli.api_client import ApiClient
from aami.cli.errors import CliError, UsageError

PROG = "aami"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump; `aami ... --help` shows the usage.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="server URL (default $AAMI_SERVER)")
    parser.add_argument("--token", help="admin API token (default $AAMI_TOKEN)")
    parser.add_argument("--ca-file", help="PEM CA bundle for https (default $AAMI_CA_FILE)")
    parser.add_argument("--http-timeout", default="30s", help="per request (default 30s)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="AAMI operator CLI")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    keys = sub.add_parser("keys", help="publisher key pairs")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    gen = keys_sub.add_parser("generate", help="write NAME.key (0600) and NAME.pub")
    gen.add_argument("--out", required=True, metavar="DIR")
    gen.add_argument("--name", default="publisher")
    gen.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    gen.set_defaults(handler=keys_cmd.generate)

    key = sub.add_parser("key", help="publisher keys on the server")
    key_sub = key.add_subparsers(dest="key_command", required=True, parser_class=_Parser)
    reg = key_sub.add_parser("register", help="send a public key to the server")
    reg.add_argument("pubfile", metavar="PUBFILE")
    reg.add_argument("--name", required=True)
    _server_flags(reg)
    reg.set_defaults(remote=keys_cmd.register)
    rev = key_sub.add_parser("revoke", help="revoke a registered key on the server")
    rev.add_argument("name", metavar="NAME")
    _server_flags(rev)
    rev.set_defaults(remote=keys_cmd.revoke)

    script = sub.add_parser("script", help="signed scripts")
    s_sub = script.add_subparsers(dest="script_command", required=True, parser_class=_Parser)
    sign = s_sub.add_parser("sign", help="sign FILE into FILE.signed.json")
    sign.add_argument("file", metavar="FILE")
    sign.add_argument("--key", required=True, metavar="KEY")
    sign.add_argument("--name", required=True)
    sign.add_argument("--version", required=True, metavar="X.Y.Z")
    sign.add_argument("--interpreter", default="bash")
    sign.add_argument("--timeout", default="60s", help="default run timeout (60s)")
    sign.add_argument("--params-schema", metavar="FILE", help="JSON or YAML parameter schema")
    sign.add_argument("--expires", help="2027-01-01, 2027-01-01T12:00:00Z or a lifetime (90d)")
    sign.add_argument("--run-as", nargs="+", action="extend", metavar="USER")
    sign.add_argument("--out", metavar="PATH", help="default FILE.signed.json")
    sign.set_defaults(handler=script_cmd.sign)

    verify = s_sub.add_parser("verify", help="verify a signed script as a node would")
    verify.add_argument("signed", metavar="SIGNED")
    verify.add_argument("--trusted-keys", required=True, metavar="DIR")
    verify.add_argument("--params", metavar="JSON", help="parameters to check against the schema")
    verify.add_argument("--run-as", metavar="USER", help="user to check against run_as")
    verify.set_defaults(handler=script_cmd.verify)

    publish = s_sub.add_parser("publish", help="upload a signed script")
    publish.add_argument("signed", metavar="SIGNED")
    _server_flags(publish)
    publish.set_defaults(remote=script_cmd.publish)

    policy = sub.add_parser("policy", help="policies")
    p_sub = policy.add_subparsers(dest="policy_command", required=True, parser_class=_Parser)
    apply = p_sub.add_parser("apply", help="create or update the policies in FILE.yaml")
    apply.add_argument("file", metavar="FILE.yaml")
    apply.add_argument("--dry-run", action="store_true", help="print what would change")
    _server_flags(apply)
    apply.set_defaults(remote=policy_cmd.apply)

    group_cmd.register(sub, _server_flags, _Parser)
    change_cmd.register(sub, _server_flags, _Parser)

    # `aami bundle build|verify` belong to the bundle package, which owns its flags.
    bundle_cli.register(sub)
    sub.choices["bundle"].set_defaults(handler=bundle_cli.run)
    return parser


def _client(args: argparse.Namespace) -> ApiClient:
    server = args.server or os.environ.get("AAMI_SERVER")
    token = args.token or os.environ.get("AAMI_TOKEN")
    if not server:
        raise UsageError("--server: required (or set AAMI_SERVER)")
    if not token:
        raise UsageError("--token: required (or set AAMI_TOKEN)")
    timeout = script_cmd.whole_seconds(args.http_timeout, "--http-timeout")
    ca_file = args.ca_file or os.environ.get("AAMI_CA_FILE") or None
    return ApiClient(server, token, ca_file=ca_file, timeout=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logsafe.setup_logging()
    try:
        remote: Callable[[argparse.Namespace, ApiClient], int] | None = getattr(
            args, "remote", None
        )
        if remote is not None:
            return remote(args, _client(args))
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except CliError as exc:
        print(f"error: {logsafe.safe(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: a one-line report, never a traceback
        print(f"error: internal error: {type(exc).__name__}: {logsafe.safe(str(exc))}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
