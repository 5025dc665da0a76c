"""The small proxy the soak's agents talk through: a faithful relay to the server, or,
while hostile, a server gone bad.

    python -m tests.soak.proxy --listen PORT --upstream https://127.0.0.1:PORT \\
        --cert server.pem --key server.key --ca ca.pem

It terminates TLS with the site's server certificate (agents pin the site CA, as in
production) and relays each request to the upstream over TLS. SIGUSR1 turns it
hostile, SIGUSR2 back to a relay. Hostile, it answers each request with the next of:
deeply nested JSON, garbage bytes, a 500 with an HTML error page, a connection that is
accepted and never answered, a truncated body, JSON of the wrong types. While the
upstream is down it answers 502, as a load balancer would.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import ssl

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "content-encoding"}


async def _nested(_: web.Request) -> web.StreamResponse:
    depth = 200_000
    return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")


async def _garbage(_: web.Request) -> web.StreamResponse:
    return web.Response(body=bytes(range(256)) * 64, content_type="application/json")


async def _html_500(_: web.Request) -> web.StreamResponse:
    return web.Response(status=500, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                        content_type="text/html")


async def _hang(_: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise web.HTTPGatewayTimeout()


async def _truncated(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Content-Length": "4096"})
    await response.prepare(request)
    await response.write(b'{"etag": "x", "assignments": [{"policy_id": 1, ')
    assert request.transport is not None
    request.transport.close()  # the body stops half way
    return response


async def _wrong_types(_: web.Request) -> web.StreamResponse:
    return web.json_response({"etag": 5, "assignments": "none", "poll_interval_seconds": "x",
                              "heartbeat_interval_seconds": -1, "accepted": "all"})


HOSTILE = (_nested, _garbage, _html_500, _hang, _truncated, _wrong_types)


class Proxy:
    def __init__(self, upstream: str, ca: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.hostile = False
        self.answers = itertools.cycle(HOSTILE)
        self.context = ssl.create_default_context(cafile=ca)
        self.session: ClientSession | None = None

    async def start(self, _: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(ssl=self.context, limit=0),
            timeout=ClientTimeout(total=60), auto_decompress=False)

    async def stop(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.hostile:
            return await next(self.answers)(request)
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        try:
            async with self.session.request(request.method, self.upstream + request.path_qs,
                                            headers=headers, data=body or None) as upstream:
                payload = await upstream.read()
                reply_headers = {k: v for k, v in upstream.headers.items()
                                 if k.lower() not in HOP_HEADERS}
                return web.Response(status=upstream.status, body=payload,
                                    headers=reply_headers)
        except (TimeoutError, ClientError, OSError):
            return web.Response(status=502, text="upstream unavailable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()
    proxy = Proxy(args.upstream, args.ca)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(proxy.start)
    app.on_cleanup.append(proxy.stop)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)

    def set_hostile(value: bool) -> None:
        proxy.hostile = value
        print(f"proxy: {'hostile' if value else 'relay'}", flush=True)

    async def on_startup(_: web.Application) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, set_hostile, True)
        loop.add_signal_handler(signal.SIGUSR2, set_hostile, False)

    app.on_startup.append(on_startup)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    web.run_app(app, host="127.0.0.1", port=args.listen, ssl_context=tls, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
