"""Failed credentials: counted, and slowed per source address.

Every bad bearer token and every failed web UI login is counted
(`aami_server_auth_failures_total{kind}`) and logged by the caller with the token's
prefix only. After `free_failures` failures in a row from one address, that address
waits before its next credential is checked: 1 s, then 2, 4, ... up to `max_seconds`
(exponential backoff); meanwhile it is answered 429 with `Retry-After`, and nothing is
looked up (`aami_server_auth_throttled_total{kind}`). Any success from the address, or
`forget_seconds` without a failure, clears it: a client holding a valid credential
gains nothing by guessing others (256-bit tokens), and many clients behind one NAT
keep each other clear while a broken one among them is still logged and counted.

What this stops and what it does not:
- a guesser, or a broken agent retrying a revoked token, costs one database lookup per
  backoff step instead of one per request, and one log line per step;
- one address cannot lock out another: state is per address (IPv6 per /64, what one
  host usually holds), and a full table forgets its oldest entries rather than
  refusing anyone;
- the state lives in each server process (with `--processes N`, each keeps its own
  count, so an address may get up to N times the attempts) and is lost on restart;
- behind a reverse proxy every client shares the proxy's address: give the proxy its
  own rate limit, or the proxy's clients share one backoff.
Tokens carry 256 bits, so guessing one is hopeless anyway; the backoff is about load
and noise, and about making a stuck client visible.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class BackoffLimits:
    free_failures: int = 5  # failures in a row before the first wait
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    forget_seconds: float = 900.0  # a quiet address starts again from zero
    max_addresses: int = 100_000  # memory bound; the oldest entries go first


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


def address_key(address: str | None) -> str:
    """The unit of backoff: an IPv4 address, an IPv6 /64, or the raw text."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthFailures:
    def __init__(self, limits: BackoffLimits | None = None, *,
                 registry: CollectorRegistry | None = None) -> None:
        self.limits = limits or BackoffLimits()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.failures = Counter("aami_server_auth_failures_total",
                                "Bad bearer tokens and failed web UI logins",
                                ["kind"], registry=registry)
        self.throttled = Counter("aami_server_auth_throttled_total",
                                 "Credentials refused unchecked (429) during a backoff",
                                 ["kind"], registry=registry)
        for kind in ("bearer", "login"):  # both series exist from the start, at 0
            self.failures.labels(kind)
            self.throttled.labels(kind)

    def retry_after(self, address: str | None, kind: str,
                    now: float | None = None) -> int | None:
        """Whole seconds this address must still wait (counted as throttled), or None
        if its credential may be checked now."""
        now = time.monotonic() if now is None else now
        entry = self._entries.get(address_key(address))
        if entry is None or entry.blocked_until <= now:
            return None
        self.throttled.labels(kind).inc()
        return max(1, math.ceil(entry.blocked_until - now))

    def failed(self, address: str | None, kind: str, now: float | None = None) -> float:
        """Record one failure; returns the wait it imposes (0 while still free)."""
        now = time.monotonic() if now is None else now
        self.failures.labels(kind).inc()
        key = address_key(address)
        entry = self._entries.pop(key, None) or _Entry()
        if now - entry.last_failure > self.limits.forget_seconds:
            entry = _Entry()
        entry.failures += 1
        entry.last_failure = now
        over = entry.failures - self.limits.free_failures
        wait = 0.0
        if over > 0:
            wait = min(self.limits.max_seconds, self.limits.base_seconds * 2 ** min(over - 1, 30))
            entry.blocked_until = now + wait
        self._entries[key] = entry  # most recent last: eviction takes the oldest
        while len(self._entries) > self.limits.max_addresses:
            self._entries.popitem(last=False)
        return wait

    def succeeded(self, address: str | None) -> None:
        if self._entries:  # the common case, nothing to clear, costs no address parsing
            self._entries.pop(address_key(address), None)
