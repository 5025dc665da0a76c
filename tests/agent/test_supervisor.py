"""The loop supervisor: restart with back-off, count, give up (exit 1), tell a hung loop
from an idle one. The daemon's loops run for real under it against the in-memory Agent
API (conftest), whose heartbeat is made to raise an unexpected error."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from aami.agent.daemon import Agent
from aami.agent.supervisor import LoopHandle, Supervisor
from tests.agent.conftest import InMemoryServer, Publisher, make_config


def test_an_empty_sleep_is_a_plain_sleep() -> None:
    """`asyncio.wait` refuses an empty set: the bug that killed the heartbeat loop."""
    handle = LoopHandle("x")
    asyncio.run(handle.sleep(0.01))
    asyncio.run(handle.sleep(0.01, asyncio.Event()))


def test_failing_loop_is_restarted_with_backoff_then_gives_up(caplog) -> None:
    restarts: list[str] = []
    runs = 0

    async def flaky(handle: LoopHandle) -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError(f"boom {runs}")

    async def main() -> Supervisor:
        sup = Supervisor(max_failures=3, window=60, backoff_cap=0.01, on_restart=restarts.append)
        sup.add("flaky", flaky)
        sup.start()
        await asyncio.wait_for(sup.failed.wait(), 5)
        await sup.stop()
        return sup

    with caplog.at_level(logging.ERROR):
        sup = asyncio.run(main())
    assert runs == 3 and restarts == ["flaky"] * 3 and sup.failure == "flaky"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3 and all(r.exc_info for r in errors)  # once each, with traceback
    assert "boom 1" in errors[0].getMessage() and "systemd" in errors[-1].getMessage()
    assert sup.status()["flaky"]["restarts"] == 3


def test_a_loop_that_recovers_carries_on() -> None:
    runs = 0

    async def once_bad(handle: LoopHandle) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise OSError("disk hiccup")
        handle.ok()
        await handle.sleep(3600)

    async def main() -> Supervisor:
        sup = Supervisor(max_failures=2, backoff_cap=0.01)
        sup.add("x", once_bad)
        sup.start()
        await asyncio.sleep(0.2)
        assert not sup.failed.is_set()
        await sup.stop()
        return sup

    sup = asyncio.run(main())
    assert runs == 2 and sup.status()["x"]["last_success"] is not None


def test_hung_loop_is_stalled_idle_loop_is_not() -> None:
    now = [1000.0]

    async def main() -> list[str]:
        sup = Supervisor(stall_limit=10, clock=lambda: now[0])

        async def idle(handle: LoopHandle) -> None:
            await handle.sleep(3600)

        async def hung(handle: LoopHandle) -> None:
            await asyncio.Event().wait()  # waits without telling the supervisor

        sup.add("idle", idle)
        sup.add("hung", hung)
        sup.start()
        await asyncio.sleep(0.05)
        assert sup.stalled() == []
        now[0] += 11
        stalled = sup.stalled()
        await sup.stop()
        return stalled

    assert asyncio.run(main()) == ["hung"]


class BrokenHeartbeat(InMemoryServer):
    async def heartbeat(self, body):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the heartbeat path")


def test_daemon_exits_1_when_a_loop_keeps_failing(
    tmp_path: Path, publisher: Publisher, caplog
) -> None:
    config = make_config(tmp_path, publisher.keys_dir, loop_backoff_cap=0.01)
    config = replace(config, agent=replace(config.agent, heartbeat_interval=0.05,
                                           poll_interval=0.05))
    agent = Agent(config, client=BrokenHeartbeat())

    async def main() -> int:
        return await asyncio.wait_for(agent.run_forever(), 30)

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(main()) == 1
    assert agent.metrics.loop_restarts["heartbeat"] == 5
    assert agent.metrics.loop_restarts["poll"] == 0
    assert 'aami_agent_loop_restarts_total{loop="heartbeat"} 5' in agent.metrics_page()
    loops = agent.status()["loops"]
    assert loops["heartbeat"]["restarts"] == 5 and loops["poll"]["last_success"] is not None
    assert "loop heartbeat failed" in caplog.text and "a bug in the heartbeat path" in caplog.text


@pytest.mark.parametrize("loop", ["poll", "schedule", "report", "heartbeat", "control"])
def test_every_loop_shows_in_status(loop: str, tmp_path: Path, publisher: Publisher) -> None:
    agent = Agent(make_config(tmp_path, publisher.keys_dir), client=InMemoryServer())
    assert agent.status()["loops"][loop] == {"last_success": None, "restarts": 0}
