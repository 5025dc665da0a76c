"""Force-run from the browser on a target where the real `aami-agent` runs: the
operator clicks Force-run, the agent (a real process, one `--once` cycle) picks the
request up on its next poll, runs the signed script, reports, and the force-run page
(refreshing itself) turns to done; the target's history shows the forced run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.realserver import Site, agent_api_available, site
from tests.harness import run_cli, wait_until
from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, _require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Site]:
    with site(tmp_path / "site") as the_site:
        if not agent_api_available(the_site.server):
            pytest.fail("the server has no Agent API")
        yield the_site


def agent_once(config: Path, token: str | None = None) -> None:
    args = ["aami-agent", "run", "--config", str(config), "--once"]
    result = run_cli(*args, *(["--token", token] if token else []), check=False, timeout=120)
    assert result.returncode == 0, result.stderr


def test_force_run_reaches_a_real_agent(s: Site, tmp_path: Path) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    s.publish(s.sign("gpu-check", "1.0.0", 'echo "gpus ok on $AAMI_HOSTNAME"\n'))
    # `once`: after its first run the agent runs it again only when forced.
    s.apply({"name": "gpu-check", "script": "gpu-check", "version": "latest",
             "scope": "global", "schedule": {"mode": "once"}, "timeout": "20s"})
    config = s.agent_config(tmp_path / "state", hostname="gpu-real-01")
    agent_once(config, s.bootstrap_token())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(s.server.url + "/ui/login")
        page.get_by_label("API token", exact=True).fill(s.admin)
        page.get_by_role("button", name="Log in").click()
        page.goto(s.server.url + "/ui/targets?hostname=gpu-real-01")
        page.get_by_role("link", name="gpu-real-01").click()
        assert len(page.locator("table.history tbody tr").all()) == 1
        page.get_by_label("Policy", exact=True).select_option(label="gpu-check")
        page.get_by_role("button", name="Force-run").click()
        page.wait_for_url(re.compile(r".*/ui/force-runs/\d+$"))
        expect(page.locator("#force-run-status")).to_have_text("pending")


        def forced_run_reported() -> bool:
            # The server's assignment cache re-reads changes about once a second (later
            # on a loaded machine): an agent pass before that sees no force-run yet.
            agent_once(config)
            reply = s.server.api("GET", "/api/v1/executions?limit=10")
            return len(reply.json["data"]) >= 2

        wait_until(forced_run_reported, timeout=60, what="the forced run reported")
        expect(page.locator("#force-run-status")).to_have_text("done", timeout=30_000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "real-agent-force-run-done-1280.png"), full_page=True)
        page.get_by_role("link", name="gpu-real-01").first.click()
        rows = page.locator("table.history tbody tr")
        assert rows.count() == 2
        assert "forced" in rows.first.inner_text()
        rows.first.locator("summary").click()
        assert "gpus ok on gpu-real-01" in rows.first.locator("details").inner_text()
        page.screenshot(path=str(SHOTS / "real-agent-target-1280.png"), full_page=True)
        browser.close()
