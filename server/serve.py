"""Running the server: TLS, signals, access log."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from aami.server.app import create_app
from aami.server.config import ServerConfig
from aami.server.supervisor import announce_ready

log = logging.getLogger(__name__)


# asyncio's TLS transport gives every connection a 256 KiB read buffer up front
# (asyncio.sslproto.SSLProtocol.max_size): 5 GB for 20,000 agents that each keep a
# connection open. A TLS record carries at most 16 KiB of data, so reading 16 KiB at a
# time costs no round trips, only loop iterations (measured: 355 -> 109 KB per TLS
# connection; docs/scaling.md).
TLS_READ_BUFFER = 16 * 1024


def small_tls_read_buffers() -> None:
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    small_tls_read_buffers()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def serve(config: ServerConfig) -> int:
    app = create_app(config)
    scheme = "https" if config.tls_cert else "http"

    def listening(_message: str) -> None:
        # aiohttp calls this once every site is bound: the moment to say so, and to
        # tell a supervisor.
        log.info("aami-server listening on %s://%s:%d (database %s)", scheme,
                 config.listen_host, config.listen_port, config.database_url.split("@")[-1])
        announce_ready()

    web.run_app(
        app,
        host=config.listen_host,
        port=config.listen_port,
        ssl_context=ssl_context(config),
        print=listening,
        access_log=None,
        shutdown_timeout=10,
        reuse_port=config.reuse_port or None,
    )
    return 0
