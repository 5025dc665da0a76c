"""ScriptStatement: canonical payloads, round trips and version parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from aami import trust

SHA = "a" * 64


def statement(**fields: object) -> trust.ScriptStatement:
    base: dict = {
        "name": "disk-usage",
        "version": "1.0.0",
        "sha256": SHA,
        "interpreter": "bash",
        "timeout_seconds": 60,
        "params_schema": {},
    }
    base.update(fields)
    return trust.ScriptStatement(**base)


def test_payload_is_canonical_json() -> None:
    payload = statement(params_schema={"type": "object", "title": "é"}).to_payload()
    assert payload == (
        b'{"expires_at":null,"interpreter":"bash","name":"disk-usage",'
        b'"params_schema":{"title":"\xc3\xa9","type":"object"},"run_as":null,'
        b'"sha256":"' + SHA.encode() + b'","timeout_seconds":60,"version":"1.0.0"}'
    )


def test_round_trip_with_every_field() -> None:
    original = statement(
        expires_at=datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
        run_as=["aami-runner", "root"],
        interpreter="/usr/bin/python3",
    )
    assert original.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert original.run_as == ("aami-runner", "root")
    assert trust.ScriptStatement.from_payload(original.to_payload()) == original
    assert b'"expires_at":"2027-01-01T00:00:00Z"' in original.to_payload()


def test_naive_expiry_is_refused() -> None:
    with pytest.raises(trust.MalformedStatement, match="timezone-aware"):
        statement(expires_at=datetime(2027, 1, 1))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("0.0.0", (0, 0, 0)),
        ("1.2.3", (1, 2, 3)),
        ("1.10.0", (1, 10, 0)),
        ("999999999.0.1", (999999999, 0, 1)),
    ],
)
def test_parse_version(text: str, parsed: tuple[int, int, int]) -> None:
    assert trust.parse_version(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["", "1", "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.2.-3", "1.2.3 ", "1.2.3-rc1", "\uff11.2.3"],
)
def test_parse_version_refuses(text: str) -> None:
    with pytest.raises(trust.MalformedStatement, match=r"X\.Y\.Z"):
        trust.parse_version(text)


def test_versions_compare_as_numbers() -> None:
    assert trust.parse_version("1.10.0") > trust.parse_version("1.9.9")


@pytest.mark.parametrize("interpreter", ["sh", "bash", "python3", "perl", "/opt/tools/bin/py-3.11"])
def test_accepted_interpreters(interpreter: str) -> None:
    assert statement(interpreter=interpreter).interpreter == interpreter


@pytest.mark.parametrize(
    "interpreter", ["python", "./run", "bin/sh", "/", "/usr/./bin/sh", "/bin/sh -c", ""]
)
def test_refused_interpreters(interpreter: str) -> None:
    with pytest.raises(trust.MalformedStatement, match="interpreter"):
        statement(interpreter=interpreter)


@pytest.mark.parametrize("user", ["Root", "1abc", "a b", "x" * 40, ""])
def test_refused_run_as_users(user: str) -> None:
    with pytest.raises(trust.MalformedStatement, match="run_as"):
        statement(run_as=[user])
