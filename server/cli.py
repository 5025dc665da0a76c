"""`aami-server`: serve, migrate, token create, bootstrap-token create.

Exit codes: 0 success; 1 the operation failed; 2 usage or configuration error,
with a one-line message naming the bad flag or key.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from datetime import timedelta

from aami.server import __version__, logsafe
from aami.server.config import DEFAULT_DATABASE_URL, ConfigError, ServerConfig, load_config
from aami.server.db import Database
from aami.units import parse_duration


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"aami-server: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default /etc/aami/server.yaml)")
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://USER@HOST/DB")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aami-server", description="AAMI config server")
    parser.add_argument("--version", action="version", version=f"aami-server {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the server")
    _common(serve)
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8080)")
    serve.add_argument("--tls-cert", help="PEM certificate (chain); with --tls-key, HTTPS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--processes", type=int,
                       help="server processes sharing the listen port (default: "
                            "server.processes, else 1); use one per core")
    # Internal: how the supervisor starts each of its processes (server/supervisor.py).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    _common(sub.add_parser("migrate", help="apply pending database migrations"))

    token = sub.add_parser("token", help="admin API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    create = token_sub.add_parser("create", help="print a new admin API token once")
    _common(create)
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer"],
                        help="what the token may do (docs/api.md, roles)")
    create.add_argument("--name", required=True, help="who or what holds it (audit log)")

    boot = sub.add_parser("bootstrap-token", help="bootstrap tokens for agent registration")
    boot_sub = boot.add_subparsers(dest="boot_command", required=True, metavar="COMMAND",
                                   parser_class=_Parser)
    bcreate = boot_sub.add_parser("create", help="print a new bootstrap token once")
    _common(bcreate)
    bcreate.add_argument("--max-uses", type=int, default=1,
                         help="how many nodes may register with it (default 1)")
    bcreate.add_argument("--expires", default="30d",
                         help="lifetime, e.g. 30d, 12h (default 30d)")
    bcreate.add_argument("--group", help="group new targets join")
    bcreate.add_argument("--name", default="", help="a label for listings")
    bcreate.add_argument("--allow-rebind", action="store_true",
                         help="may take over a hostname that already has an agent")
    bcreate.add_argument("--hostname",
                         help="only this node may register with it (and claim its target "
                              "if created in advance)")
    imp = sub.add_parser("import", help="import a verified offline bundle's keys, scripts "
                         "and policies")
    _common(imp)
    imp.add_argument("bundle", help="the bundle file (.tar.gz)")
    imp.add_argument("--key", default="/etc/aami/release.pub",
                     help="release public key the bundle must be signed with")
    imp.add_argument("--quiet", action="store_true", help="no progress, summary only")

    aud = sub.add_parser("audit", help="the hash-chained audit log (docs/security.md)")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True, metavar="COMMAND",
                                 parser_class=_Parser)
    verify = aud_sub.add_parser("verify", help="exit 1 naming the first entry that breaks "
                                "the chain")
    _common(verify)
    verify.add_argument("--expect-head", metavar="HASH",
                        help="a head recorded earlier (from the server's log or an earlier "
                             "verify): exit 1 unless the chain still holds it")
    prune = aud_sub.add_parser("prune", help="drop entries older than a duration, "
                               "keeping the chain verifiable (a checkpoint entry)")
    _common(prune)
    prune.add_argument("--older-than", required=True, help="e.g. 365d")
    return parser


def _setup_logging(config: ServerConfig) -> None:
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()),
        # The pid tells apart the processes of `serve --processes N` in one log.
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    logsafe.install()  # secrets masked, control characters escaped (server/logsafe.py)


def _open_migrated(config: ServerConfig) -> tuple[Database, int]:
    """The database, migrated: (it, how many migrations this call applied)."""
    from aami.server.migrations import migrate

    database = Database(config.database_url, threads=1)
    return database, len(migrate(database.peewee))


def _open_for_reading(config: ServerConfig) -> Database:
    """An existing database at this server's schema, opened without changing it: a
    check (`audit verify`) must not create or migrate what it checks."""
    from pathlib import Path

    from aami.server.migrations import pending_migrations

    if config.database_url.startswith("sqlite:///"):
        path = Path(config.database_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigError(f"database {config.database_url}: no such file")
    database = Database(config.database_url, threads=1)
    name = describe_database(config.database_url)
    if not database.peewee.table_exists("schema_migrations"):
        database.close()
        raise ConfigError(f"database {name}: not an aami-server database (never migrated)")
    pending = pending_migrations(database.peewee)
    if pending:
        database.close()
        raise ConfigError(f"database {name}: {len(pending)} migration(s) not applied; "
                          "run aami-server migrate")
    return database


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw_argv)
    try:
        config = load_config(
            args.config, database=args.database,
            listen=getattr(args, "listen", None),
            tls_cert=getattr(args, "tls_cert", None), tls_key=getattr(args, "tls_key", None),
            processes=getattr(args, "processes", None),
            reuse_port=getattr(args, "reuse_port", False),
        )
        if args.command == "bootstrap-token":
            if args.max_uses < 1:
                raise ConfigError("--max-uses: must be at least 1")
            try:
                lifetime = parse_duration(args.expires)
            except ValueError as exc:
                raise ConfigError(f"--expires: {exc}") from None
            if args.hostname is not None:
                _check_hostname(args.hostname)
        if args.command == "audit" and args.audit_command == "verify" and \
                args.expect_head is not None and not re.fullmatch(r"[0-9a-f]{64}",
                                                                  args.expect_head):
            raise ConfigError("--expect-head: expected the 64 hex digits of an entry's hash")
        if args.command == "audit" and args.audit_command == "prune":
            try:
                lifetime = parse_duration(args.older_than)
            except ValueError as exc:
                raise ConfigError(f"--older-than: {exc}") from None
            if lifetime <= 0:
                raise ConfigError("--older-than: must be more than 0 (0 would drop every "
                                  "entry but the newest)")
        _check_database_named(args, config)
    except ConfigError as exc:
        print(f"aami-server: error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config)
    # Which database, always: a token made in the wrong one fails only much later.
    print(f"aami-server: database {describe_database(config.database_url)}", file=sys.stderr)
    try:
        return _dispatch(args, config, locals().get("lifetime", 0.0), raw_argv)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for the operator; the log has the detail
        logging.getLogger("aami-server").debug("failure", exc_info=True)
        print(f"aami-server: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _check_database_named(args: argparse.Namespace, config: ServerConfig) -> None:
    """Refuse to create a database nobody named: without --config (or the default
    /etc/aami/server.yaml), --database or AAMI_DATABASE_URL, the fallback
    sqlite:///aami.db in the current directory is used only if it already exists."""
    import os
    from pathlib import Path

    named = (args.database or os.environ.get("AAMI_DATABASE_URL")
             or config.database_url != DEFAULT_DATABASE_URL)
    if named or Path(DEFAULT_DATABASE_URL.removeprefix("sqlite:///")).exists():
        return
    raise ConfigError(
        "no database named: give --config FILE (database.url), --database URL or "
        "AAMI_DATABASE_URL; ./aami.db does not exist and is not created unasked"
    )


def _check_hostname(value: str) -> None:
    from aami.server.schemas import HOSTNAME, is_hostname

    if len(value) > HOSTNAME["maxLength"]:
        raise ConfigError(f"--hostname: longer than {HOSTNAME['maxLength']} characters")
    if not is_hostname(value):
        raise ConfigError(f"--hostname: {value!r} is not a hostname "
                          "(letters, digits, '.' and '-')")


def describe_database(url: str) -> str:
    """The URL without its password (the log and the terminal may be shared)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _dispatch(args: argparse.Namespace, config: ServerConfig, lifetime: float,
              argv: list[str]) -> int:
    if args.command == "serve" and config.processes > 1:
        from aami.server.supervisor import supervise

        return supervise(argv, config)
    if args.command == "serve":
        from aami.server.serve import serve

        return serve(config)
    if args.command == "audit" and args.audit_command == "verify":
        try:
            database = _open_for_reading(config)
        except ConfigError as exc:
            print(f"aami-server: error: {exc}", file=sys.stderr)
            return 2
        try:
            return _audit(args, 0.0)
        finally:
            database.close()
    database, applied = _open_migrated(config)
    try:
        if args.command == "migrate":
            print(f"applied {applied} migration(s); database is up to date" if applied
                  else "database is up to date")
        elif args.command == "token":
            from aami.server.services.tokens import create_api_token
            from aami.server.tokens import Role

            secret, made = create_api_token(args.name, Role(args.role))
            _audit_cli("token.create", "token", made.get("id"),
                       {"name": args.name, "role": args.role})
            print(secret)
        elif args.command == "import":
            return _import(args)
        elif args.command == "bootstrap-token":
            from aami.server.services.tokens import create_bootstrap_token
            from aami.server.timefmt import utcnow

            expires = utcnow() + timedelta(seconds=lifetime) if lifetime else None
            secret, made = create_bootstrap_token(
                name=args.name, max_uses=args.max_uses, expires_at=expires,
                group=args.group, allow_rebind=args.allow_rebind, hostname=args.hostname,
            )
            _audit_cli("bootstrap-token.create", "bootstrap-token", made.get("id"),
                       {"name": args.name, "max_uses": args.max_uses, "group": args.group,
                        "expires": args.expires, "allow_rebind": args.allow_rebind,
                        "hostname": args.hostname})
            print(secret)
        elif args.command == "audit":
            return _audit(args, lifetime)
    finally:
        database.close()
    return 0


def _audit_cli(action: str, object_type: str, object_id: object, summary: dict) -> None:
    from aami.server.services import audit

    audit.record(audit.cli_actor(), action, object_type, object_id, summary)


def _audit(args: argparse.Namespace, older_than: float) -> int:
    from aami.server.services import audit
    from aami.server.timefmt import utcnow

    if args.audit_command == "prune":
        result = audit.prune(utcnow() - timedelta(seconds=older_than), audit.cli_actor())
        print(f"dropped {result['dropped']} entries"
              + (f"; checkpoint {result['checkpoint_id']}" if result["dropped"] else ""))
        return 0
    verdict = audit.verify(args.expect_head)
    if not verdict.ok and verdict.broken_id is None:
        print(f"audit log broken: {verdict.reason} ({verdict.checked} entries verified, "
              f"head {verdict.head})")
        return 1
    if not verdict.ok:
        print(f"audit log broken at entry {verdict.broken_id}: {verdict.reason} "
              f"({verdict.checked} entries before it verified)")
        return 1
    print(f"audit log intact: {verdict.checked} entries, head {verdict.head}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aami.bundle.manifest import BundleRefused
    from aami.server.bundle_import import BundleImportError, import_bundle

    try:
        release_pem = Path(args.key).read_bytes()
    except OSError as exc:
        print(f"aami-server: error: --key {args.key}: {exc.strerror}", file=sys.stderr)
        return 2
    if not Path(args.bundle).is_file():
        print(f"aami-server: error: {args.bundle}: no such file", file=sys.stderr)
        return 2
    show = not args.quiet and sys.stderr.isatty()

    def progress(what: str, done: int, total: int) -> None:
        if show:
            end = "\n" if done == total else ""
            sys.stderr.write(f"\r{what}: {done}/{total}\033[K{end}")

    try:
        result = import_bundle(Path(args.bundle), release_pem, progress)
    except BundleRefused as exc:
        print(f"aami-server: bundle refused: {exc} ({exc.reason})", file=sys.stderr)
        return 1
    except BundleImportError as exc:
        print(f"aami-server: error: {exc}", file=sys.stderr)
        return 1
    for problem in result.problems:
        print(f"aami-server: warning: {problem}", file=sys.stderr)
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(result.counts.items()))
    print(f"imported {args.bundle} as job {result.job_id}: {counts or 'nothing to import'}")
    _audit_cli("bundle.import", "bundle", result.job_id,
               {"bundle": str(args.bundle), "counts": dict(result.counts)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
