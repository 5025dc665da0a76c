"""A real `aami-server` with a publisher key, signed scripts and policies, set up the
way an operator does it: `aami keys generate`, `aami key register`, `aami script sign`,
`aami script publish`, `aami policy apply`, `aami-server bootstrap-token create`.

Used by the agent's end-to-end tests and by `tests/bench/agent_footprint.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import ServerProcess, http, run_cli


def agent_api_available(server: ServerProcess) -> bool:
    """True when the server has the Agent API routes (a bad token gets 401, not 404)."""
    reply = http("POST", server.url + "/api/v1/agent/register", token="not-a-token",
                 json_body={"hostname": "probe", "agent_version": "0"})
    return reply.status in (401, 403)


@dataclass
class Site:
    server: ServerProcess
    work: Path
    keys_dir: Path
    private_key: Path
    admin: str
    policies: list[dict[str, object]] = field(default_factory=list)

    def sign(self, name: str, version: str, body: str, **flags: str) -> Path:
        script = self.work / f"{name}-{version}.sh"
        script.write_text(body)
        extra = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
        run_cli("aami", "script", "sign", str(script), "--key", str(self.private_key),
                "--name", name, "--version", version, *extra)
        return Path(str(script) + ".signed.json")

    def publish(self, signed: Path) -> None:
        run_cli("aami", "script", "publish", str(signed), "--server", self.server.url,
                "--token", self.admin)

    def apply(self, *policies: dict[str, object]) -> None:
        import yaml

        self.policies.extend(policies)
        path = self.work / "policies.yaml"
        path.write_text(yaml.safe_dump({"policies": self.policies}))
        run_cli("aami", "policy", "apply", str(path), "--server", self.server.url,
                "--token", self.admin)

    def bootstrap_token(self, *extra: str) -> str:
        return self.server.bootstrap_token(*extra)

    def agent_config(self, state_dir: Path, *, hostname: str = "node-e2e",
                     poll: str = "1s", metrics: str = "off") -> Path:
        path = self.work / f"agent-{hostname}.yaml"
        path.write_text(
            f"server: {{url: '{self.server.url}', timeout: 5s}}\n"
            f"agent: {{hostname: {hostname}, state_dir: {state_dir}, poll_interval: {poll},\n"
            f"         heartbeat_interval: {poll}, bootstrap_token_file: null}}\n"
            f"trust: {{keys_dir: {self.keys_dir}}}\n"
            f"executor: {{default_timeout: 30s}}\n"
            f"metrics: {{listen: '{metrics}', textfile_dir: null}}\n"
        )
        return path


@contextmanager
def site(directory: Path, database_url: str | None = None, *,
         server_config: str | None = None) -> Iterator[Site]:
    """`server_config`: YAML text for the server's --config (e.g. short agent intervals)."""
    directory.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{directory / 'aami.db'}"
    config = None
    if server_config is not None:
        config = str(directory / "server.yaml")
        Path(config).write_text(server_config)
    with ServerProcess.start(url, directory, config=config) as server:
        keys = directory / "keys"
        run_cli("aami", "keys", "generate", "--out", str(keys), "--name", "ops")
        admin = server.token("admin")
        run_cli("aami", "key", "register", str(keys / "ops.pub"), "--name", "ops",
                "--server", server.url, "--token", admin)
        trusted = directory / "trusted-keys"
        trusted.mkdir()
        (trusted / "ops.pub").write_bytes((keys / "ops.pub").read_bytes())
        yield Site(server, directory, trusted, keys / "ops.key", admin)
