"""The server load benchmark itself runs end to end (a few agents, short periods).

It keeps `make bench-server` from rotting between the runs whose figures are
quoted in docs/scaling.md, and it is one more test of two real server processes
sharing one PostgreSQL: every simulated agent registers, downloads its scripts,
polls with its ETag, heart-beats and reports, against either process, each over
one kept-alive connection of its own, as real agents do; and once over TLS with a
site CA that every simulated agent pins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import server_load


def _run(tmp_path: Path, agents: int, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "figures.json"
    status = server_load.main([
        "--agents", str(agents), "--duration", "14s", "--ramp", "2s", "--poll", "3s",
        "--heartbeat", "3s", "--report", "4s", "--server-processes", "2",
        # A smoke test of the benchmark, not a latency target (make bench measures):
        # the budget only catches a stall.
        "--p99-budget", "30000ms", "--json", str(out), *extra])
    return status, json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("layout", [[], ["--shared-port"]], ids=["two-ports", "shared-port"])
def test_a_short_run_reports_every_endpoint_without_errors(tmp_path: Path,
                                                           layout: list[str]) -> None:
    # two ports: a load balancer's view; shared port: `serve --processes 2`.
    status, result = _run(tmp_path, 40, *layout)
    assert status == 0, result["error_samples"]
    assert result["registered"] == 40 and result["errors"] == 0
    endpoints = result["endpoints"]
    assert set(endpoints) == {"register", "script", "assignments", "heartbeat", "executions"}
    # Polls after the first come back 304: the ETag path is what the load is made of.
    assert result["statuses"].get("assignments 304", 0) > 0
    assert endpoints["executions"]["requests"] >= 40
    assert len(result["servers"]) == 2 and all(s["rss_mb"] > 0 for s in result["servers"])
    assert result["server_side_mean_ms"]["POST /api/v1/agent/heartbeat"]["count"] > 0
    # One connection per agent, kept for all of its ~15 requests.
    assert result["connections"] == "per-agent" and not result["tls"]
    assert result["connections_opened"] == 40 < result["requests"] / 10
    assert result["server_cpu_ms_per_request"] > 0
    assert result["server_cpu_ms_per_request_after_ramp"] > 0


@pytest.mark.slow
def test_over_tls_every_agent_pins_the_site_ca_on_its_own_connection(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(tmp_path, 20, "--tls")
    assert status == 0, result["error_samples"]
    assert result["tls"] and result["registered"] == 20 and result["errors"] == 0
    # Every request went over HTTPS (a plain-HTTP request to a TLS port fails, and a
    # certificate the CA did not sign would fail verification): all were answered.
    assert result["statuses"].get("assignments 304", 0) > 0
    assert result["endpoints"]["executions"]["requests"] >= 20
    assert result["connections_opened"] == 20
    assert result["server_cpu_ms_per_request"] > 0
    printed = capsys.readouterr().out
    assert "transport: TLS, every agent pinning the site CA" in printed
    assert "one kept-alive connection per agent" in printed
    assert "server CPU per request (all processes):" in printed


@pytest.mark.slow
def test_a_simulated_agent_refuses_a_server_certificate_its_ca_did_not_sign(
        tmp_path: Path) -> None:
    import asyncio
    import contextlib
    import ssl

    import aiohttp

    from tests.bench.server_site import start_server
    from tests.conftest import fresh_database
    from tests.pki import make_pki

    (site := tmp_path / "site").mkdir()
    (other := tmp_path / "other").mkdir()
    pki, stranger = make_pki(site), make_pki(other)
    pinned = ssl.create_default_context(cafile=str(pki[0]))
    config = tmp_path / "server.yaml"
    config.write_text("logging: {level: warning}\n")

    async def ask(port: int, context: ssl.SSLContext) -> int | str:
        connections = server_load.Connections("per-agent", [port], context, 1)
        try:
            async with connections.session_for(0).get(
                    connections.base(0) + "/health/ready") as reply:
                return reply.status
        except aiohttp.ClientError as exc:
            return type(exc).__name__
        finally:
            await connections.close()

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database("postgresql", tmp_path))
        server = stack.enter_context(start_server(url, tmp_path, config, (), pki, pinned))
        assert asyncio.run(ask(server.port, pinned)) == 200
        assert asyncio.run(ask(server.port, ssl.create_default_context(
            cafile=str(stranger[0])))) == "ClientConnectorCertificateError"
