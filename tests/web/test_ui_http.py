"""The web UI over real HTTP (no browser): sessions, CSRF, roles, forms, every page."""

from __future__ import annotations

import html
import re
import urllib.parse
import urllib.request

import pytest

from tests.harness import run_cli
from tests.web.conftest import Fleet
from tests.web.helpers import UiClient


def logged_in(fleet: Fleet, role: str = "admin") -> UiClient:
    client = UiClient(fleet.server.url)
    client.login(fleet.server.token(role))
    return client


def test_root_redirects_to_the_ui(fleet: Fleet) -> None:
    page = UiClient(fleet.server.url).get("/")
    assert page.status == 302 and page.location == "/ui/"


def test_pages_need_a_session(fleet: Fleet) -> None:
    client = UiClient(fleet.server.url)
    page = client.get("/ui/targets?status=online")
    assert page.status == 303
    assert page.location and page.location.startswith("/ui/login?")
    query = urllib.parse.parse_qs(page.location.split("?", 1)[1])
    assert query["next"] == ["/ui/targets?status=online"]
    refused = client.post(f"/ui/targets/{fleet.nodes[0].target_id}/force-run",
                          {"policy_id": str(fleet.policy_id)})
    assert refused.status == 401


def test_session_cookie_flags_and_security_headers(fleet: Fleet) -> None:
    client = UiClient(fleet.server.url)
    req = urllib.request.Request(fleet.server.url + "/ui/login")
    with urllib.request.urlopen(req) as resp:
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    client.login(fleet.server.token("admin"))
    session = next(c for c in client.jar if c.name == "aami_session")
    assert session.has_nonstandard_attr("HttpOnly")
    assert len(session.value) >= 40  # 256 random bits, urlsafe base64
    assert not session.secure  # plain HTTP here; Secure is set under TLS


def test_login_refuses_bad_tokens_and_missing_csrf(fleet: Fleet) -> None:
    client = UiClient(fleet.server.url)
    form = client.get("/ui/login")
    bad = client.post("/ui/login", {"csrf_token": form.csrf(), "token": "aami_adm_nope"})
    assert bad.status == 401 and "not valid" in bad.text
    agent = client.post("/ui/login", {"csrf_token": client.get("/ui/login").csrf(),
                                      "token": fleet.nodes[0].token})
    assert agent.status == 401 and "not an admin API token" in agent.text
    fresh = UiClient(fleet.server.url)  # no login-CSRF cookie: a cross-site post
    forged = fresh.post("/ui/login", {"csrf_token": "x", "token": fleet.server.token()})
    assert forged.status == 403
    assert not [c for c in fresh.jar if c.name == "aami_session"]


def test_every_page_renders_for_an_admin(fleet: Fleet) -> None:
    client = logged_in(fleet)
    target = fleet.nodes[0].target_id
    pages = ["/ui/", "/ui/targets", "/ui/targets?status=online&group=ml-training",
             "/ui/targets?hostname=node-001", f"/ui/targets/{target}",
             f"/ui/targets/{target}?success=false", "/ui/executions",
             "/ui/executions?success=true&script=disk-usage", "/ui/scripts",
             "/ui/scripts/disk-usage", "/ui/scripts/disk-usage/1.0.0", "/ui/policies",
             f"/ui/policies/{fleet.policy_id}", f"/ui/policies/{fleet.policy_id}/edit",
             "/ui/policies/new", "/ui/groups", f"/ui/groups/{fleet.group_id}", "/ui/keys",
             "/ui/bootstrap-tokens", "/ui/static/app.css"]
    for path in pages:
        page = client.get(path)
        assert page.status == 200, (path, page.status, page.text[:300])
    assert client.get("/ui/targets/999999").status == 404
    assert client.get("/ui/targets/abc").status == 404
    assert client.get("/ui/static/../app.py").status == 404


def test_dashboard_counts_and_lists(fleet: Fleet) -> None:
    page = logged_in(fleet, "viewer").get("/ui/")
    assert re.search(r'id="count-online">\s*<span class="n st-online">2</span>', page.text)
    assert re.search(r'id="count-never">\s*<span class="n st-never">1</span>', page.text)
    assert "disk-usage-ml" in page.text  # a failing policy
    assert "evil-script" in page.text and "bad_signature" in page.text  # a refusal
    assert "<svg" in page.text and "failed" in page.text
    # The success metrics panel: runs were reported, but no node has beaten twice yet.
    assert re.search(r'id="health-script_success_rate">\s*<span class="n (ok|fail)">'
                     r"\d+\.\d\d %</span>Script runs succeeded", page.text)
    beats = re.search(r'id="health-heartbeat_compliance">(.*?)</div>', page.text, re.S)
    assert beats and "nothing measured yet" in beats.group(1)


def test_target_list_filters(fleet: Fleet) -> None:
    client = logged_in(fleet, "viewer")
    assert "1 target<" in client.get("/ui/targets?hostname=node-002").text
    assert "2 targets" in client.get("/ui/targets?status=online").text
    never = client.get("/ui/targets?status=never").text
    assert "gpu-node-002" in never and "gpu-node-000" not in never


def test_history_filters_and_keyset_paging(fleet: Fleet) -> None:
    client = logged_in(fleet, "viewer")
    target = fleet.nodes[0].target_id
    failed = client.get(f"/ui/targets/{target}?success=false").text
    assert failed.count('class="badge fail">failed') == 2
    assert 'class="badge ok">success' not in failed
    assert "threshold exceeded on /data" in failed  # stderr, inside <details>
    recent = client.get(f"/ui/targets/{target}?since=2000-01-01T00:00&until=2000-01-02T00:00")
    assert "No execution matches." in recent.text
    bad = client.get(f"/ui/targets/{target}?since=yesterday")
    assert bad.status == 200 and "expected a date and time" in bad.text
    # 18 executions fleet-wide, 25 per page: page 1 has them all and no "Older" link.
    assert 'rel="next"' not in client.get("/ui/executions").text


def test_viewer_sees_no_buttons_and_is_refused(fleet: Fleet) -> None:
    client = logged_in(fleet, "viewer")
    target = fleet.nodes[0].target_id
    assert "Force-run" not in client.get(f"/ui/targets/{target}").text
    policy = client.get(f"/ui/policies/{fleet.policy_id}").text
    assert 'id="force-run"' not in policy and ">Edit<" not in policy
    assert "New policy" not in client.get("/ui/policies").text
    assert "Register a key" not in client.get("/ui/keys").text
    csrf = client.csrf()
    forged = client.post(f"/ui/targets/{target}/force-run",
                         {"csrf_token": csrf, "policy_id": str(fleet.policy_id)})
    assert forged.status == 403 and "operator role" in forged.text
    assert client.post(f"/ui/groups/{fleet.group_id}/force-run",
                       {"csrf_token": csrf, "policy_id": str(fleet.policy_id)}).status == 403
    assert client.post(f"/ui/policies/{fleet.policy_id}/enabled",
                       {"csrf_token": csrf, "enabled": "false"}).status == 403
    assert client.post("/ui/keys", {"csrf_token": csrf, "name": "x",
                                    "public_key": "x"}).status == 403
    assert client.get("/ui/bootstrap-tokens").status == 403
    operator = logged_in(fleet, "operator")
    assert operator.post("/ui/bootstrap-tokens", {
        "csrf_token": operator.csrf(), "max_uses": "1", "expires": "1d"}).status == 403


def test_csrf_is_required_on_every_post(fleet: Fleet) -> None:
    client = logged_in(fleet, "admin")
    target = fleet.nodes[0].target_id
    missing = client.post(f"/ui/targets/{target}/force-run", {"policy_id": str(fleet.policy_id)})
    assert missing.status == 403 and "CSRF" in missing.text
    wrong = client.post("/ui/groups", {"csrf_token": "forged", "name": "sneaky"})
    assert wrong.status == 403
    other = logged_in(fleet, "admin")  # another session's token is not this session's
    assert client.post("/ui/logout", {"csrf_token": other.csrf()}).status == 403
    assert "sneaky" not in client.get("/ui/groups").text


def test_policy_form_shows_field_errors_then_saves(fleet: Fleet) -> None:
    client = logged_in(fleet, "operator")
    form = {"csrf_token": client.csrf(), "name": "disk-web", "script": "disk-usage",
            "version": "latest", "scope": "target", "target": "gpu-node-000", "group": "",
            "params": '{"threshold_percent": 150}', "mode": "interval", "interval": "5m",
            "timeout": "", "run_as": "", "priority": "0", "enabled": "on"}
    page = client.post("/ui/policies/new", form)
    assert page.status == 422
    assert re.search(r'id="f-params"[^>]*aria-invalid="true"', page.text)
    assert 'id="err-params"' in page.text and "threshold_percent" in page.text
    assert "150" in page.text  # the form keeps what was typed
    page = client.post("/ui/policies/new", {**form, "params": "{not json"})
    assert page.status == 400 and "not valid JSON" in page.text
    form["params"] = "{}"
    page = client.post("/ui/policies/new", {**form, "interval": "soon"})
    assert 'id="err-interval"' in page.text
    page = client.post("/ui/policies/new", {**form, "run_as": "root"})
    assert 'id="err-run_as"' in page.text
    saved = client.post("/ui/policies/new", {**form, "params": '{"threshold_percent": 90}'})
    assert saved.status == 303 and saved.location
    policy_id = int(saved.location.rsplit("/", 1)[1])
    api = fleet.server.api("GET", f"/api/v1/policies/{policy_id}", role="viewer").json
    assert api["params"] == {"threshold_percent": 90}
    assert api["schedule"]["interval_seconds"] == 300 and api["target"] == "gpu-node-000"
    disabled = client.post(f"/ui/policies/{policy_id}/enabled",
                           {"csrf_token": client.csrf(), "enabled": "false"})
    assert disabled.status == 303
    api = fleet.server.api("GET", f"/api/v1/policies/{policy_id}", role="viewer").json
    assert api["enabled"] is False


def test_force_run_on_target_shows_progress(fleet: Fleet) -> None:
    client = logged_in(fleet, "operator")
    node = fleet.nodes[0]
    page = client.post(f"/ui/targets/{node.target_id}/force-run",
                       {"csrf_token": client.csrf(), "policy_id": str(fleet.policy_id)})
    assert page.status == 303 and page.location
    status = client.get(page.location)
    assert 'id="force-run-status">pending' in status.text
    assert 'http-equiv="refresh"' in status.text
    token = node.wait_for(
        lambda a: next((x["force_token"] for x in a if x["force_token"]), None))
    node.report("disk-usage", True, policy_id=fleet.policy_id, minutes_ago=0,
                force_token=token)
    done = client.get(page.location).text
    assert 'id="force-run-status">done' in done and 'http-equiv="refresh"' not in done


def test_group_force_run_fans_out(fleet: Fleet) -> None:
    client = logged_in(fleet, "admin")
    page = client.post(f"/ui/groups/{fleet.group_id}/force-run",
                       {"csrf_token": client.csrf(), "policy_id": str(fleet.policy_id)})
    assert page.status == 303 and page.location
    for _ in range(50):
        text = client.get(page.location).text
        if "3 pending of 3" in text:
            break
    assert "3 pending of 3" in text


def test_bootstrap_token_shown_once_with_install_command(fleet: Fleet) -> None:
    client = logged_in(fleet, "admin")
    page = client.post("/ui/bootstrap-tokens", {"csrf_token": client.csrf(), "name": "rack-7",
                                                "max_uses": "20", "expires": "2d",
                                                "group": "ml-training"})
    assert page.status == 200
    token = re.search(r'id="new-token">(aami_bst_[^<]+)<', page.text).group(1)
    url = fleet.server.url
    command = html.unescape(re.search(r'id="install-command">(.*?)</pre>', page.text,
                                      re.S).group(1))
    # The documented, verified node install (docs/install.md), filled in for this server.
    assert command.startswith(f"SERVER={url} ") and f"BOOTSTRAP_TOKEN={token}\n" in command
    assert "openssl pkeyutl -verify" in command and "sha256sum --check --strict" in command
    assert '--release-key "$RELEASE_PUB"' in command and "| bash" not in command
    assert token not in client.get("/ui/bootstrap-tokens").text  # never shown again
    bad = client.post("/ui/bootstrap-tokens", {"csrf_token": client.csrf(), "max_uses": "0",
                                               "expires": "soon", "group": ""})
    assert bad.status == 400 and 'id="err-max_uses"' in bad.text and 'id="err-expires"' in bad.text
    # A token for one node only: the page says so, the API lists it, a bad name is refused.
    scoped = client.post("/ui/bootstrap-tokens", {"csrf_token": client.csrf(), "max_uses": "1",
                                                  "expires": "1d", "hostname": "gpu-77"})
    assert scoped.status == 200 and "only node gpu-77 may register with it" in scoped.text
    assert '--release-key "$RELEASE_PUB" --hostname gpu-77\n' in html.unescape(scoped.text)
    listed = fleet.server.api("GET", "/api/v1/bootstrap-tokens").json["data"]
    assert [t["hostname"] for t in listed if t["hostname"]] == ["gpu-77"]
    # Recorded with the token's id, though the page answers 200 without a Location.
    [made] = fleet.server.api("GET", "/api/v1/audit?action=bootstrap-token.create&limit=1"
                              ).json["data"]
    assert made["actor"]["kind"] == "session"
    assert made["object_id"] == str(next(t["id"] for t in listed if t["hostname"]))
    bad_host = client.post("/ui/bootstrap-tokens", {"csrf_token": client.csrf(),
                                                    "max_uses": "1", "expires": "1d",
                                                    "hostname": "gpu 77\n"})
    assert bad_host.status == 400 and 'id="err-hostname"' in bad_host.text


def test_publisher_key_register_and_revoke(fleet: Fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_cli("aami", "keys", "generate", "--out", str(tmp_path), "--name", "web")
    client = logged_in(fleet, "admin")
    pem = (tmp_path / "web.pub").read_text()
    bad = client.post("/ui/keys", {"csrf_token": client.csrf(), "name": "broken",
                                   "public_key": "not a key"})
    assert bad.status == 422 and 'id="err-public_key"' in bad.text
    assert client.post("/ui/keys", {"csrf_token": client.csrf(), "name": "web-key",
                                    "public_key": pem}).status == 303
    keys = fleet.server.api("GET", "/api/v1/publisher-keys", role="viewer").json["data"]
    key = next(k for k in keys if k["name"] == "web-key")
    assert client.post(f"/ui/keys/{key['id']}/revoke",
                       {"csrf_token": client.csrf()}).status == 303
    keys = fleet.server.api("GET", "/api/v1/publisher-keys", role="viewer").json["data"]
    assert next(k for k in keys if k["name"] == "web-key")["revoked"] is True


def test_logout_and_revocation_end_sessions(fleet: Fleet) -> None:
    client = logged_in(fleet, "admin")
    assert client.post("/ui/logout", {"csrf_token": client.csrf()}).status == 303
    assert client.get("/ui/").status == 303  # the old cookie is gone server-side too
    secret = run_cli("aami-server", "token", "create", "--role", "operator", "--name",
                     "short-lived", "--database", fleet.server.database_url).stdout.strip()
    client = UiClient(fleet.server.url)
    client.login(secret)
    assert client.get("/ui/").status == 200
    tokens = fleet.server.api("GET", "/api/v1/tokens").json["data"]
    token_id = next(t["id"] for t in tokens if t["name"] == "short-lived")
    assert fleet.server.api("POST", f"/api/v1/tokens/{token_id}/revoke").status == 200
    assert client.get("/ui/").status == 303


@pytest.mark.parametrize("path", ["/api/v1/targets", "/health"])
def test_api_paths_are_untouched(fleet: Fleet, path: str) -> None:
    page = UiClient(fleet.server.url).get(path)
    assert page.status in (200, 401) and "Content-Security-Policy" not in page.text
