"""The built binaries against a real server (`aami-server serve` on SQLite, the real
`aami` CLI to sign and publish): nothing is faked.

1. The static agent (`dist/aami-agent-static`, staticx) in an empty root. The root
   holds the binary, an empty `/proc` (a fresh procfs is mounted on it inside a
   private mount namespace: `unshare --mount` + `chroot`, as root), and what a node
   install writes: `/etc/aami/agent.yaml` and the trusted publisher key; no libc, no
   loader, no other library. Besides: an empty `/tmp` (staticx and PyInstaller unpack
   into it at each start), no `/etc/passwd` (the agent then names its own user by
   uid), and, for the *script*, not for the agent: a signed script
   needs its interpreter, so Debian's static busybox (package busybox-static) is
   copied in as `/bin/sh`. The network namespace is the host's, so the agent reaches
   the test's server on 127.0.0.1. It registers with a bootstrap token, verifies and
   runs the signed script, and the run arrives at the server with its stdout.
2. The single-file `dist/aami-agent` passes the same end-to-end scenarios as the
   source agent in tests/agent/test_e2e_agent.py (same helpers, same assertions).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.realserver import Site, site
from tests.agent.test_e2e_agent import events, executions, policy, run_until_version
from tests.binaries.conftest import Binaries
from tests.harness import require, run_cli, wait_until
from tests.packaging.tools import require_tool

pytestmark = pytest.mark.slow

BUSYBOX = Path("/bin/busybox")
CHECK = 'echo "static ok on $AAMI_HOSTNAME"\nread -r params\necho "params: $params"\n'


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Site]:
    with site(tmp_path / "site") as the_site:
        yield the_site


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def make_root(root: Path, s: Site, agent: Path) -> None:
    """The empty root: the agent, /proc, the node's config and key, busybox as /bin/sh."""
    for directory in ("proc", "tmp", "bin", "etc/aami/trusted-keys"):
        (root / directory).mkdir(parents=True)
    # staticx, then PyInstaller, unpack the program into $TMPDIR or /tmp at each start.
    (root / "tmp").chmod(0o1777)
    shutil.copy2(agent, root / "aami-agent")
    shutil.copy2(BUSYBOX, root / "bin" / "sh")  # the script's interpreter only
    shutil.copy2(s.keys_dir / "ops.pub", root / "etc/aami/trusted-keys/ops.pub")
    (root / "etc/aami/agent.yaml").write_text(
        f"server: {{url: '{s.server.url}', timeout: 5s}}\n"
        "agent: {hostname: node-chroot, state_dir: /var/lib/aami-agent, poll_interval: 1s,\n"
        "        heartbeat_interval: 1s, bootstrap_token_file: null}\n"
        "trust: {keys_dir: /etc/aami/trusted-keys}\n"
        "metrics: {listen: 'off', textfile_dir: null}\n"
    )


def run_in_root(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`/aami-agent ARGS` chrooted into `root`, with a fresh /proc in a private mount
    namespace (it goes away with the process), a bare environment, the host's network."""
    inner = ('root=$1; shift; mount -t proc proc "$root/proc" '
             '&& exec chroot "$root" /aami-agent "$@"')
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", inner, "bash",
         str(root), *args],
        capture_output=True, text=True, timeout=120, env={"LANG": "C.UTF-8"},
    )


def test_static_agent_in_an_empty_root_registers_and_runs_a_signed_script(
    binaries: Binaries, s: Site, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "chroot and mount need root")
    for tool in ("unshare", "chroot", "mount"):
        require_tool(tool)
    require(BUSYBOX.is_file(), "busybox-static is not installed (/bin/busybox)")
    signed = s.sign("chroot-check", "1.0.0", CHECK, interpreter="/bin/sh")
    s.publish(signed)
    s.apply(policy("chroot-check", "chroot-check", schedule={"mode": "once"},
                   params={}))
    root = tmp_path / "root"
    make_root(root, s, binaries.agent_static)
    before = files_under(root)
    assert before == ["aami-agent", "bin/sh", "etc/aami/agent.yaml",
                      "etc/aami/trusted-keys/ops.pub"]

    version = run_in_root(root, "version")
    assert version.returncode == 0 and version.stdout.startswith("aami-agent "), \
        version.stdout + version.stderr
    started = time.monotonic()
    result = run_in_root(root, "run", "--once", "--token", s.bootstrap_token())
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr

    [run] = executions(s)
    assert run["success"] is True, run
    assert run["script_name"] == "chroot-check" and run["exit_code"] == 0
    assert run["stdout"] == "static ok on node-chroot\nparams: {}\n"
    [target] = s.server.api("GET", "/api/v1/targets?hostname=node-chroot").json["data"]
    assert run["target_id"] == target["id"]
    # The agent made its own state inside the root; it needed nothing else.
    assert (root / "var/lib/aami-agent/state.json").is_file()
    assert not (root / "lib").exists() and not (root / "usr").exists()
    print(f"\nstatic agent in the empty root: register + verify + run + report in "
          f"{elapsed:.2f}s; {binaries.agent_static.stat().st_size / 2**20:.1f} MiB")


def agent_once(agent: Path, config: Path, token: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    """tests/agent/test_e2e_agent.py's `agent_once`, with the built binary."""
    args = [str(agent), "run", "--config", str(config), "--once"]
    return subprocess.run([*args, *(["--token", token] if token else [])],
                          capture_output=True, text=True, timeout=120)


def test_built_agent_registers_runs_reports_and_takes_a_new_version(
    binaries: Binaries, s: Site, tmp_path: Path
) -> None:
    """The scenario of test_register_run_report_and_new_version, with dist/aami-agent."""
    s.publish(s.sign("disk", "1.0.0", 'echo "disk ok on $AAMI_HOSTNAME"\n'))
    s.apply(policy("disk", "disk", schedule={"mode": "once"}))
    config = s.agent_config(tmp_path / "state")
    first = agent_once(binaries.agent, config, s.bootstrap_token())
    assert first.returncode == 0, first.stderr
    [run] = executions(s)
    assert run["success"] and run["script_version"] == "1.0.0"
    assert run["stdout"] == "disk ok on node-e2e\n"

    s.publish(s.sign("disk", "1.1.0", 'echo "v1.1"\n'))
    run_until_version(s, lambda: agent_once(binaries.agent, config), "1.1.0")
    assert sorted(r["script_version"] for r in executions(s)) == ["1.0.0", "1.1.0"]


def test_built_agent_refuses_an_untrusted_key_and_a_rollback(
    binaries: Binaries, s: Site, tmp_path: Path
) -> None:
    """Part of test_tampered_scripts_are_refused_on_the_node_and_reported, with the binary:
    the verification code (cryptography's Ed25519 in the frozen binary) really runs."""
    s.publish(s.sign("probe", "2.0.0", f"touch {tmp_path / 'ran'}\n"))
    s.apply(policy("probe", "probe"))
    boot = s.bootstrap_token("--max-uses", "10")
    other = tmp_path / "other-keys"
    run_cli("aami", "keys", "generate", "--out", str(other), "--name", "stranger")
    node_keys = tmp_path / "node-keys"
    node_keys.mkdir()
    shutil.copy2(other / "stranger.pub", node_keys / "stranger.pub")
    config = s.agent_config(tmp_path / "state1", hostname="node-a")
    config.write_text(config.read_text().replace(str(s.keys_dir), str(node_keys)))
    assert agent_once(binaries.agent, config, boot).returncode == 1

    state = tmp_path / "state2"
    state.mkdir()
    (state / "state.json").write_text('{"version": 1, "highest_versions": {"probe": "3.0.0"}}')
    assert agent_once(binaries.agent, s.agent_config(state, hostname="node-c"),
                      boot).returncode == 1
    assert not (tmp_path / "ran").exists(), "a refused script ran"
    assert executions(s) == []
    assert sorted(e["reason"] for e in events(s)) == ["rollback", "unknown_key"]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        out = subprocess.run(["ps", "--ppid", str(todo.pop()), "-o", "pid="],
                             capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        found += children
        todo += children
    return found


@pytest.mark.parametrize("which", ["agent", "agent_static"])
def test_sigterm_to_the_unpacking_parent_stops_the_agent_cleanly(
    which: str, binaries: Binaries, s: Site, tmp_path: Path
) -> None:
    """systemd (KillMode=mixed) signals the unit's main process only, which for a
    single-file binary is the unpacking parent: it must pass SIGTERM on, the agent must
    stop gracefully (exit 0), and the unpacked copy in $TMPDIR must be gone."""
    s.publish(s.sign("tick", "1.0.0", "echo tick\n"))
    s.apply(policy("tick", "tick", schedule={"mode": "interval", "interval": "2s"}))
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    agent = subprocess.Popen(
        [str(getattr(binaries, which)), "run", "--config",
         str(s.agent_config(tmp_path / "state")), "--token", s.bootstrap_token()],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    try:
        wait_until(lambda: len(executions(s)) >= 1, 60, "a first run")
        tree = _descendants(agent.pid)
        assert tree, "a single-file binary runs its program in a child process"
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
        assert agent.returncode == 0, stderr
        for pid in tree:
            assert not Path(f"/proc/{pid}").exists(), "a child outlived the parent"
        assert list(scratch.iterdir()) == [], "the unpacked copy was left behind"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
