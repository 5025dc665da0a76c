"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright,
against a real `aami-server serve` process (SQLite and PostgreSQL).

Screenshots of every page, at 1280 px and 390 px wide, go to
`test-artifacts/screenshots/` (gitignored) for a person to look at.

The "agent" that picks up the force-run here is `FakeNode` speaking the Agent API
over real HTTP (poll assignments, report the execution carrying the force token);
the end-to-end run with the real `aami-agent` daemon belongs to the integration suite.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import require
from tests.web.conftest import Fleet

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("AAMI_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic"]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTHS = (1280, 390)


def _require_chromium() -> None:
    require(bool(Path(CHROMIUM).exists() or shutil.which(CHROMIUM)),
            f"Chromium not found at {CHROMIUM} (install Debian's chromium package)")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                              headless=True)
        yield chromium
        chromium.close()


class Ui:
    """One logged-in browser context, with screenshot helpers."""

    def __init__(self, browser: object, fleet: Fleet, role: str, width: int = 1280) -> None:
        self.fleet = fleet
        self.context = browser.new_context(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.width = width
        self.page.goto(fleet.server.url + "/ui/login")
        self.page.get_by_label("API token", exact=True).fill(fleet.server.token(role))
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/ui/")

    def go(self, path: str) -> None:
        response = self.page.goto(self.fleet.server.url + path)
        assert response is not None and response.status == 200, (path, response)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{self.fleet.backend}-{name}-{self.width}.png"),
                             full_page=True)

    def close(self) -> None:
        self.context.close()


def test_operator_flow(browser: object, fleet: Fleet) -> None:
    from playwright.sync_api import expect

    ui = Ui(browser, fleet, "admin")
    page = ui.page
    try:
        # Dashboard: status counts link to the filtered list.
        assert page.locator("#count-online .n").inner_text() == "2"
        assert page.locator("svg.chart").count() == 1
        ui.shot("dashboard")
        page.locator("#count-never").click()
        page.wait_for_url("**/ui/targets?status=never")
        assert page.locator("tbody tr").count() == 1
        assert "gpu-node-002" in page.locator("tbody").inner_text()

        # Targets: search by hostname (keyboard only: type, then Enter).
        ui.go("/ui/targets")
        page.get_by_label("Hostname contains", exact=True).fill("node-001")
        page.keyboard.press("Enter")
        page.wait_for_url("**hostname=node-001**")
        assert page.locator("#target-total").inner_text() == "1 target"
        ui.shot("targets")
        page.get_by_role("link", name="gpu-node-001").click()

        # Target detail: agent status and history, then filter the history.
        page.wait_for_url(re.compile(r".*/ui/targets/\d+$"))
        assert page.locator("#agent-version").inner_text() == "0.1.0"
        assert page.locator("table.history tbody tr").count() == 6
        page.get_by_label("Outcome", exact=True).select_option("false")
        page.get_by_role("button", name="Filter history").click()
        page.wait_for_url("**success=false**")
        rows = page.locator("table.history tbody tr")
        assert rows.count() == 2
        assert all("failed" in t for t in rows.all_inner_texts())
        rows.first.locator("summary").click()
        assert page.locator("details[open] pre").first.is_visible()
        assert "threshold exceeded" in page.locator("details[open]").first.inner_text()
        ui.shot("target-failures")

        # Create a policy: a schema-invalid parameter is shown next to its field.
        ui.go("/ui/policies/new")
        page.get_by_label("Name", exact=True).fill("disk-node-000")
        page.get_by_label("Script", exact=True).select_option("disk-usage")
        page.get_by_label("Scope", exact=True).select_option("target")
        page.get_by_label("Target hostname (scope target)", exact=True).fill("gpu-node-000")
        page.get_by_label("Parameters (JSON object)", exact=True).fill('{"threshold_percent": 250}')
        page.get_by_label("Interval (schedule interval)", exact=True).fill("2m")
        page.get_by_role("button", name="Save policy").click()
        error = page.locator("#err-params")
        assert error.is_visible() and "threshold_percent" in error.inner_text()
        assert page.get_by_label("Parameters (JSON object)", exact=True).get_attribute(
            "aria-invalid") == "true"
        ui.shot("policy-form-error")
        page.get_by_label("Parameters (JSON object)", exact=True).fill('{"threshold_percent": 95}')
        page.get_by_role("button", name="Save policy").click()
        page.wait_for_url(re.compile(r".*/ui/policies/\d+$"))
        assert "disk-node-000" in page.locator("h1").inner_text()
        ui.shot("policy")
        policy_id = int(page.url.rsplit("/", 1)[1])

        # Force-run it on its target; the request shows as pending, then done once
        # the node (polling the Agent API) reports the execution.
        page.locator("#force-run").click()
        page.wait_for_url(re.compile(r".*/ui/force-runs/\d+$"))
        assert page.locator("#force-run-status").inner_text() == "pending"
        ui.shot("force-run-pending")
        node = fleet.nodes[0]
        token = node.wait_for(lambda a: next(
            (x["force_token"] for x in a if x["force_token"] and x["policy_id"] == policy_id),
            None))
        node.report("disk-usage", True, policy_id=policy_id, minutes_ago=0,
                    force_token=token, stdout="forced run ok\n")
        # No reload here: the page refreshes itself every few seconds.
        expect(page.locator("#force-run-status")).to_have_text("done", timeout=15_000)
        assert "1 succeeded" in page.locator("#force-run-counts").inner_text()
        ui.shot("force-run-done")
        page.get_by_role("link", name=re.compile("gpu-node-000")).first.click()
        first = page.locator("table.history tbody tr").first
        assert "forced" in first.inner_text()
        first.locator("summary").click()
        assert "forced run ok" in first.locator("details").inner_text()

        # The other pages, looked at.
        for path, name in [("/ui/scripts/disk-usage", "script"), ("/ui/policies", "policies"),
                           (f"/ui/groups/{fleet.group_id}", "group"), ("/ui/groups", "groups"),
                           ("/ui/keys", "keys"), ("/ui/executions", "executions")]:
            ui.go(path)
            ui.shot(name)
        ui.go("/ui/bootstrap-tokens")
        page.get_by_label("Maximum uses", exact=True).fill("5")
        page.get_by_role("button", name="Create token").click()
        assert page.locator("#new-token").inner_text().startswith("aami_bst_")
        assert "openssl pkeyutl -verify" in page.locator("#install-command").inner_text()
        ui.shot("bootstrap-token-created")
    finally:
        ui.close()


def test_narrow_screen_pages(browser: object, fleet: Fleet) -> None:
    ui = Ui(browser, fleet, "operator", width=390)
    try:
        for path, name in [("/ui/", "dashboard"), ("/ui/targets", "targets"),
                           (f"/ui/targets/{fleet.nodes[0].target_id}", "target"),
                           (f"/ui/policies/{fleet.policy_id}", "policy"),
                           ("/ui/policies/new", "policy-form")]:
            ui.go(path)
            # Nothing but the tables (which scroll inside their own box) is wider
            # than the screen.
            overflow = ui.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, (path, overflow)
            ui.shot(name)
    finally:
        ui.close()


def test_keyboard_reaches_the_main_content(browser: object, fleet: Fleet) -> None:
    ui = Ui(browser, fleet, "viewer")
    try:
        ui.page.keyboard.press("Tab")
        assert ui.page.evaluate("document.activeElement.textContent") == "Skip to content"
        ui.page.keyboard.press("Enter")
        assert ui.page.evaluate("document.activeElement.id") == "main"
        # Every form control on the policy page's forms has a label.
        ui.go(f"/ui/targets/{fleet.nodes[0].target_id}")
        unlabelled = ui.page.evaluate("""[...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')].filter(e => !e.labels.length
            && !e.getAttribute('aria-label')).map(e => e.name)""")
        assert unlabelled == []
    finally:
        ui.close()


def test_viewer_cannot_force_run(browser: object, fleet: Fleet) -> None:
    ui = Ui(browser, fleet, "viewer")
    page = ui.page
    try:
        target_id = fleet.nodes[0].target_id
        ui.go(f"/ui/targets/{target_id}")
        assert page.get_by_role("button", name="Force-run").count() == 0
        ui.shot("viewer-target")
        ui.go(f"/ui/policies/{fleet.policy_id}")
        assert page.locator("#force-run").count() == 0
        assert page.get_by_role("link", name="Edit").count() == 0
        # A forged POST with the viewer's own valid CSRF token is still refused.
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
        reply = page.request.post(f"{fleet.server.url}/ui/targets/{target_id}/force-run",
                                  form={"csrf_token": csrf or "",
                                        "policy_id": str(fleet.policy_id)},
                                  max_redirects=0)
        assert reply.status == 403 and "operator role" in reply.text()
    finally:
        ui.close()


def test_post_without_csrf_token_is_refused(browser: object, fleet: Fleet) -> None:
    ui = Ui(browser, fleet, "admin")
    try:
        before = fleet.server.api("GET", "/api/v1/groups", role="viewer").json["data"]
        reply = ui.page.request.post(f"{fleet.server.url}/ui/groups",
                                     form={"name": "csrf-victim", "priority": "1"},
                                     max_redirects=0)
        assert reply.status == 403 and "CSRF" in reply.text()
        after = fleet.server.api("GET", "/api/v1/groups", role="viewer").json["data"]
        assert after == before
    finally:
        ui.close()
