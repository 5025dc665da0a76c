"""Failed credentials are logged (prefix and address only), counted, and slowed per
address (429 + Retry-After), without one address locking out another
(server/auth_failures.py). Other addresses are real: the test binds its client
sockets to 127.0.0.2 and 127.0.0.3, which Linux routes over loopback."""

from __future__ import annotations

import http.client
import re
import time
import urllib.parse
from dataclasses import dataclass

from tests.harness import ServerProcess, wait_until
from tests.web.helpers import UiClient

BAD = "aami_adm_BaDgUeSs" + "g" * 34


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


def _from(source: str, s: ServerProcess, method: str, path: str, *, token: str | None = None,
          headers: dict[str, str] | None = None, body: bytes | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10,
                                      source_address=(source, 0))
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()),
                      response.read().decode(errors="replace"))
    finally:
        conn.close()


def _metric(s: ServerProcess, name: str, kind: str) -> float:
    text = _from("127.0.0.1", s, "GET", "/metrics").text
    match = re.search(rf'^{name}{{kind="{kind}"}} (\S+)$', text, re.M)
    assert match, f"{name} missing"
    return float(match.group(1))


def test_bad_bearer_tokens_back_off_per_address(live_server: ServerProcess) -> None:
    s = live_server
    good = s.token("admin")
    # Made before the failures (a CLI process can take longer than the 1 s wait), and
    # unknown to the server until it is first used.
    viewer = s.token("viewer")
    assert _from("127.0.0.1", s, "GET", "/api/v1/groups", token=good).status == 200  # cached
    for _ in range(6):  # five free failures; the sixth starts a 1 s wait
        assert _from("127.0.0.1", s, "GET", "/api/v1/groups", token=BAD).status == 401
    refused = _from("127.0.0.1", s, "GET", "/api/v1/groups", token=BAD)
    assert refused.status == 429 and refused.headers["Retry-After"] == "1", refused
    assert '"retry_after": 1' in refused.text and "TOO_MANY_REQUESTS" in refused.text
    # Unknown to this process yet, so not looked up while the address waits.
    assert _from("127.0.0.1", s, "GET", "/api/v1/groups", token=viewer).status == 429
    # Other addresses are not touched, bad tokens included.
    assert _from("127.0.0.2", s, "GET", "/api/v1/groups", token=viewer).status == 200
    assert _from("127.0.0.3", s, "GET", "/api/v1/groups", token=BAD).status == 401

    time.sleep(1.1)
    assert _from("127.0.0.1", s, "GET", "/api/v1/groups", token=BAD).status == 401
    again = _from("127.0.0.1", s, "GET", "/api/v1/groups", token=BAD)
    assert again.status == 429 and again.headers["Retry-After"] == "2"  # doubled
    # A token already known valid still works from the waiting address (a NAT'd fleet
    # keeps working past one broken node), and its success clears the address.
    assert _from("127.0.0.1", s, "GET", "/api/v1/groups", token=good).status == 200
    assert _from("127.0.0.1", s, "GET", "/api/v1/groups", token=BAD).status == 401

    assert _metric(s, "aami_server_auth_failures_total", "bearer") == 9
    assert _metric(s, "aami_server_auth_throttled_total", "bearer") == 3
    wait_until(lambda: "waits 2s" in s.log(), 5, "the log line of the second wait")
    log = s.log()
    assert "BaDgUeSsg" not in log
    assert re.search(r"WARNING .* bad token aami_adm_BaDg\*\*\* from 127\.0\.0\.1 "
                     r"on GET /api/v1/groups: the token is not valid", log)
    assert "from 127.0.0.3" in log


def _login_from(source: str, s: ServerProcess, token: str) -> Answer:
    page = _from(source, s, "GET", "/ui/login")
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    form = urllib.parse.urlencode({"csrf_token": csrf.group(1), "token": token,
                                   "next": "/ui/"}).encode()
    return _from(source, s, "POST", "/ui/login", body=form, headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})


def test_failed_logins_back_off_per_address(live_server: ServerProcess) -> None:
    s = live_server
    admin = s.token("admin")  # before the failures: a CLI process may outlast the wait
    for _ in range(6):
        assert _login_from("127.0.0.1", s, BAD).status == 401
    slowed = _login_from("127.0.0.1", s, admin)
    assert slowed.status == 429 and slowed.headers["Retry-After"] == "1"
    assert "Too many failed logins" in slowed.text
    assert _login_from("127.0.0.2", s, s.token("admin")).status == 303  # others log in
    time.sleep(1.1)
    UiClient(s.url).login(s.token("admin"))  # after the wait, a good login clears it
    assert _login_from("127.0.0.1", s, BAD).status == 401
    assert _metric(s, "aami_server_auth_failures_total", "login") == 7
    assert _metric(s, "aami_server_auth_throttled_total", "login") == 1
    assert "failed web UI login with aami_adm_BaDg*** from 127.0.0.1" in s.log()
