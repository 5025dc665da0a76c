"""`aami-agent`: run, status, poll --now, version, migrate-cron.

Exit codes: 0 success; 1 the operation failed; 2 a usage or configuration error,
printed as one line naming the flag, key or file (never a traceback). Heavy modules
(asyncio, the daemon) are imported only by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from aami.agent import __version__
from aami.agent.config import AgentConfig, ConfigError, load_config

PROG = "aami-agent"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="configuration file (default /etc/aami/agent.yaml)")
    p.add_argument("--state-dir", help="state directory (default /var/lib/aami-agent)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="AAMI node agent")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the daemon (or one cycle with --once)")
    _common(run)
    run.add_argument("--server", help="config server URL (or AAMI_SERVER)")
    run.add_argument("--token", help="bootstrap token (or AAMI_TOKEN, agent.bootstrap_token_file)")
    run.add_argument("--hostname", help="name this node registers under")
    run.add_argument("--poll-interval", help="poll interval until the server sets one, e.g. 30s")
    run.add_argument("--once", action="store_true", help="one cycle, exit 0 when all went well")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    status = sub.add_parser("status", help="show the agent's state")
    _common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    poll = sub.add_parser("poll", help="ask the running agent to poll now and wait")
    _common(poll)
    poll.add_argument("--now", action="store_true", required=True, help="poll immediately")
    sub.add_parser("version", help="print the version")
    mig = sub.add_parser("migrate-cron", help="disable the old cron/timer check runner")
    _common(mig)
    mig.add_argument("--rollback", action="store_true", help="restore what a migration disabled")
    mig.add_argument("--root", default="/", help="filesystem root to operate on (default /)")
    return parser


def _config(args: argparse.Namespace, **flags: tuple[object, str]) -> AgentConfig:
    overrides = {"agent.state_dir": (args.state_dir, "--state-dir"), **flags}
    return load_config(args.config, overrides, token=getattr(args, "token", None),
                       verbose=getattr(args, "verbose", False))


def _lock(state_dir: Path) -> Any:
    """One agent per state directory: two would race on the spool and the state."""
    import fcntl

    handle = open(state_dir / "agent.lock", "a")  # noqa: SIM115 - held for the process life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(
            f"another aami-agent is running with state directory {state_dir}"
        ) from None
    return handle


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(
        args,
        **{
            "server.url": (args.server, "--server"),
            "agent.hostname": (args.hostname, "--hostname"),
            "agent.poll_interval": (args.poll_interval, "--poll-interval"),
        },
    )
    if not config.server.url:
        raise ConfigError("server.url: not set (use --server, AAMI_SERVER or server.url)")
    if config.server.ca_file and not os.access(config.server.ca_file, os.R_OK):
        raise ConfigError(f"server.ca_file: cannot read {config.server.ca_file}")
    import asyncio
    import faulthandler

    from aami.agent.daemon import Agent
    from aami.agent.logging_setup import Masker, setup_logging
    from aami.agent.state import ensure_state_dir

    faulthandler.enable()  # a watchdog SIGABRT leaves each thread's traceback in the journal
    masker = Masker(config.logging.mask_patterns)
    setup_logging(config.logging.level, config.logging.format, masker, verbose=config.verbose)
    try:
        state_dir = ensure_state_dir(config.state_dir)
    except OSError as exc:
        raise ConfigError(
            f"agent.state_dir: cannot create {config.state_dir} ({exc.strerror})"
        ) from None
    lock = _lock(state_dir)
    try:
        async def main() -> int:
            agent = Agent(config, masker=masker)
            return await (agent.run_once() if args.once else agent.run_forever())

        return asyncio.run(main())
    finally:
        lock.close()


def _offline_status(config: AgentConfig) -> dict[str, Any]:
    from aami.agent.runbook import RUNS_FILE, RunBook
    from aami.agent.spool import Spool
    from aami.agent.state import STATE_FILE, AgentState
    from aami.agent.status import build_status

    base = Path(config.state_dir)
    raw: dict[str, Any] = {}
    try:
        raw = json.loads((base / STATE_FILE).read_bytes())
        state = AgentState.from_json(raw)
    except FileNotFoundError:
        state = AgentState()
    except (OSError, ValueError, TypeError) as exc:
        raise RuntimeError(f"{base / STATE_FILE}: unreadable ({exc})") from None
    try:  # an agent not yet started since the upgrade keeps these in state.json
        book = RunBook.from_json(json.loads((base / RUNS_FILE).read_bytes()))
    except FileNotFoundError:
        book = RunBook.from_json(raw)
    except (OSError, ValueError, TypeError) as exc:
        raise RuntimeError(f"{base / RUNS_FILE}: unreadable ({exc})") from None
    pending, dropped = {}, 0
    for kind in ("executions", "events"):
        directory = base / "spool" / kind
        if directory.is_dir():
            spool: Spool[Any] = Spool(directory, max_records=1 << 30)
            pending[kind], dropped = spool.count(), dropped + spool.dropped
        else:
            pending[kind] = 0
    return build_status(state, book, daemon="not running", server=config.server.url,
                        hostname=config.agent.hostname, spool_pending=pending,
                        spool_dropped=dropped)


def cmd_status(args: argparse.Namespace) -> int:
    from aami.agent.control import SOCKET_NAME, ControlUnavailable, send_command
    from aami.agent.status import format_status

    config = _config(args)
    try:
        reply = send_command(Path(config.state_dir) / SOCKET_NAME, "status", timeout=10)
        status = reply["status"]
    except ControlUnavailable:
        status = _offline_status(config)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from aami.agent.control import SOCKET_NAME, ControlUnavailable, send_command

    config = _config(args)
    path = Path(config.state_dir) / SOCKET_NAME
    try:
        reply = send_command(path, "poll", timeout=config.server.timeout * 3 + 5)
    except ControlUnavailable:
        raise RuntimeError(f"no aami-agent is running (no control socket at {path})") from None
    print(("poll ok: " if reply.get("ok") else "poll failed: ") + str(reply.get("message")))
    return 0 if reply.get("ok") else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from aami.agent.migrate_cron import migrate, rollback

    config = _config(args)
    action = rollback if args.rollback else migrate
    done = action(Path(args.root), Path(config.state_dir))
    for line in done or ["nothing to do"]:
        print(line)
    return 0


COMMANDS = {"run": cmd_run, "status": cmd_status, "poll": cmd_poll, "migrate-cron": cmd_migrate}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "version":
            print(f"{PROG} {__version__}")
            return 0
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an operation failed: one line, no traceback
        from aami.agent.migrate_cron import MigrationError

        known = (RuntimeError, OSError, MigrationError, ValueError)
        if not isinstance(exc, known):
            raise
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
