"""Keys and a signed script shared by the trust tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from aami import trust

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
CONTENT = b"#!/bin/bash\ndf -h / | tail -n 1\n"
SCHEMA = {
    "type": "object",
    "properties": {
        "threshold_percent": {"type": "integer", "minimum": 1, "maximum": 100, "default": 80},
        "mounts": {"type": "array", "items": {"type": "string", "pattern": "/.*"}},
    },
    "required": ["threshold_percent"],
}


@dataclass(frozen=True)
class Publisher:
    private_pem: bytes
    public_pem: bytes
    key: trust.TrustedKey


def make_publisher(name: str, *, revoked: bool = False) -> Publisher:
    private = trust.generate_private_key_pem()
    public = trust.public_key_pem(private)
    return Publisher(private, public, trust.load_trusted_key(public, name=name, revoked=revoked))


@pytest.fixture(scope="session")
def alice() -> Publisher:
    return make_publisher("alice")


@pytest.fixture(scope="session")
def bob() -> Publisher:
    return make_publisher("bob")


@pytest.fixture(scope="session")
def trusted(alice: Publisher, bob: Publisher) -> dict[str, trust.TrustedKey]:
    return {alice.key.key_id: alice.key, bob.key.key_id: bob.key}


def sign(publisher: Publisher, content: bytes = CONTENT, **fields: object) -> trust.SignedScript:
    defaults: dict[str, object] = {
        "name": "disk-usage",
        "version": "1.2.0",
        "params_schema": SCHEMA,
        "run_as": ["aami-runner"],
        "expires_at": datetime(2027, 1, 1, tzinfo=UTC),
    }
    defaults.update(fields)
    return trust.sign_script(content, publisher.private_pem, **defaults)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def signed(alice: Publisher) -> trust.SignedScript:
    return sign(alice)
