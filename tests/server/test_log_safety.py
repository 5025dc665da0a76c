"""Server and CLI logs are safe to ship: secrets masked, request data cannot forge a
line, a malformed request is one WARNING line (server/logsafe.py, cli/logsafe.py)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aami.cli import logsafe as cli_logsafe
from aami.server import logsafe
from tests.harness import ServerProcess, run_cli, wait_until

SESSION = "SeSsIoNsEcReT" + "s" * 40
TOKEN = "aami_adm_" + "T0kEnSeCrEt" + "t" * 32


def _raw(s: ServerProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_secrets_masked_and_lines_unforgeable(live_server: ServerProcess) -> None:
    s = live_server
    big = "x" * 9000
    for header in (f"Cookie: theme=dark; aami_session={SESSION}{big}",
                   f"Authorization: Bearer {TOKEN}{big}"):
        reply = _raw(s, f"GET /health HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode())
        assert reply.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), reply[:100]
    # A header line without a colon: aiohttp's BadHttpMessage, not a size limit.
    reply = _raw(s, b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert reply.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), reply[:100]
    assert s.api("GET", "/downloads/x%0Aforged%20line").status in (404, 503)
    assert s.api("GET", "/api/v1/groups", token=TOKEN).status == 401

    wait_until(lambda: s.log().count("malformed request") >= 3, 10, "parser warnings")
    log = s.log()
    assert "SeSsIoNsEcReT" not in log and "T0kEnSeCrEt" not in log
    assert "Traceback" not in log and " ERROR " not in log
    malformed = [line for line in log.splitlines() if "malformed request" in line]
    assert len(malformed) == 3 and all(" WARNING " in line for line in malformed)
    assert not any(line.startswith("forged") for line in log.splitlines())
    assert "x\\x0aforged line" in log


@pytest.mark.parametrize("text", [
    f"Bearer {TOKEN}", f"b'Bearer {TOKEN}xxx...'", f"Authorization: Token {SESSION} x",
    f"Cookie: a=1; aami_session={SESSION}", f"{{'Cookie': 'aami_login_csrf={SESSION}'}}",
    f"aami_session={SESSION}; other", f"token {TOKEN} refused", "plain text\nline",
])
def test_server_and_cli_mask_alike(text: str) -> None:
    masked = logsafe.mask(text)
    assert masked == cli_logsafe.mask(text)
    assert "SeSsIoNsEcReT" not in masked and "T0kEnSeCrEt" not in masked


class _EchoingServer(http.server.BaseHTTPRequestHandler):
    """A server that puts the caller's Authorization header in its error message."""

    def do_GET(self) -> None:
        body = json.dumps({"error": f"bad credential {self.headers['Authorization']}\n"
                                    "forged: line", "code": "X"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echoing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_cli_masks_a_token_the_server_echoes(echoing_server: str, tmp_path: Path) -> None:
    result = run_cli("aami", "group", "list", "--server", echoing_server, "--token", TOKEN,
                     check=False)
    assert result.returncode == 1
    assert "T0kEnSeCrEt" not in result.stderr and "aami_adm_T0kE***" in result.stderr
