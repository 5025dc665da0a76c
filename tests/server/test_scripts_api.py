"""Publisher keys and signed script upload through a real server: every refusal has
its own code, re-publishing is idempotent, versions only go up."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aami.trust import sign_envelope
from tests.harness import ServerProcess
from tests.server.helpers import Publisher, unique


def _payload(doc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(doc["envelope"]["payload"]))  # type: ignore[no-any-return]


def _with_statement(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The document with its statement changed but the old signature kept (tampering)."""
    tampered = copy.deepcopy(doc)
    statement = {**_payload(doc), **changes}
    tampered["envelope"]["payload"] = base64.b64encode(
        json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()).decode()
    return tampered


def test_publisher_keys(shared_server: ServerProcess) -> None:
    s = shared_server
    pub = Publisher()
    listed_before = s.api("GET", "/api/v1/publisher-keys", role="viewer").json["pagination"]
    forbidden = s.api("POST", "/api/v1/publisher-keys", role="operator",
                      json_body={"name": pub.name, "public_key": pub.public_pem})
    assert forbidden.status == 403
    key = pub.register(s)
    assert len(key["key_id"]) == 64 and key["revoked"] is False
    assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    same_name = s.api("POST", "/api/v1/publisher-keys",
                      json_body={"name": pub.name, "public_key": Publisher().public_pem})
    assert same_name.status == 409 and same_name.json["details"]["field"] == "body.name"
    same_key = s.api("POST", "/api/v1/publisher-keys",
                     json_body={"name": unique("other"), "public_key": pub.public_pem})
    assert same_key.status == 409 and same_key.json["details"]["key_id"] == key["key_id"]
    bad = s.api("POST", "/api/v1/publisher-keys",
                json_body={"name": unique("bad"), "public_key": "-----BEGIN PUBLIC KEY-----\nxx"})
    assert bad.status == 422 and bad.json["code"] == "MALFORMED_KEY"
    assert bad.json["details"]["field"] == "body.public_key"
    assert s.api("GET", f"/api/v1/publisher-keys/{key['id']}", role="viewer").json == key
    after = s.api("GET", "/api/v1/publisher-keys").json["pagination"]
    assert after["total"] == listed_before["total"] + 1
    revoked = s.api("POST", f"/api/v1/publisher-keys/{key['id']}/revoke")
    assert revoked.status == 200 and revoked.json["revoked"] is True
    assert s.api("GET", "/api/v1/publisher-keys?revoked=true").json["data"][-1]["revoked"]
    assert s.api("POST", "/api/v1/publisher-keys/999999/revoke").status == 404


def test_upload_versions_and_idempotency(shared_server: ServerProcess) -> None:
    s = shared_server
    pub = Publisher()
    pub.register(s)
    name = unique("disk")
    schema = {"type": "object", "properties": {"threshold": {"type": "integer", "default": 80}}}
    v1 = pub.sign(name, "1.0.0", params_schema=schema, run_as=["aami-runner"])
    first = s.api("POST", "/api/v1/scripts", role="operator", json_body=v1)
    assert first.status == 201, first.body
    assert first.json["version"] == "1.0.0" and first.json["run_as"] == ["aami-runner"]
    assert s.api("POST", "/api/v1/scripts", json_body=v1).status == 200  # same again
    assert s.api("POST", "/api/v1/scripts", role="viewer", json_body=v1).status == 403

    changed_same_version = pub.sign(name, "1.0.0", b"echo other\n")
    conflict = s.api("POST", "/api/v1/scripts", json_body=changed_same_version)
    assert conflict.status == 409 and conflict.json["code"] == "VERSION_NOT_HIGHER"
    assert s.api("POST", "/api/v1/scripts", json_body=pub.sign(name, "1.10.0")).status == 201
    lower = s.api("POST", "/api/v1/scripts", json_body=pub.sign(name, "1.9.0"))
    assert lower.status == 409 and lower.json["details"]["highest_version"] == "1.10.0"

    listed = s.api("GET", "/api/v1/scripts", role="viewer").json["data"]
    assert [x["version"] for x in listed if x["name"] == name] == ["1.10.0"]
    every = s.api("GET", f"/api/v1/scripts?name={name}").json["data"]
    assert [x["version"] for x in every] == ["1.10.0", "1.0.0"]
    versions = s.api("GET", f"/api/v1/scripts/{name}/versions").json
    assert [x["version"] for x in versions["data"]] == ["1.10.0", "1.0.0"]
    assert s.api("GET", "/api/v1/scripts/no-such-script/versions").status == 404

    detail = s.api("GET", f"/api/v1/scripts/{name}/versions/1.0.0").json
    assert "content" not in detail and detail["statement"]["params_schema"] == schema
    assert detail["envelope"] == v1["envelope"] and detail["key_id"] == detail["envelope"][
        "signatures"][0]["keyid"]
    with_content = s.api("GET", f"/api/v1/scripts/{name}/versions/1.0.0?include_content=true")
    assert with_content.json["content"] == v1["content"]
    assert s.api("GET", f"/api/v1/scripts/{name}/versions/7.7.7").status == 404


def _refusal_cases(pub: Publisher, name: str) -> dict[str, tuple[int, str, dict[str, Any]]]:
    good = pub.sign(name, "2.0.0")
    stranger = Publisher()
    content_changed = {**good, "content": base64.b64encode(b"rm -rf /\n").decode()}
    bad_sig = copy.deepcopy(good)
    sig = base64.b64decode(bad_sig["envelope"]["signatures"][0]["sig"])
    bad_sig["envelope"]["signatures"][0]["sig"] = base64.b64encode(
        bytes([sig[0] ^ 1]) + sig[1:]).decode()
    wrong_type = copy.deepcopy(good)
    wrong_type["envelope"] = sign_envelope(
        "application/json", base64.b64decode(good["envelope"]["payload"]), pub.private_pem
    ).to_json()
    expired = pub.sign(name, "3.0.0", expires_at=datetime.now(UTC) - timedelta(days=2))
    return {
        "unknown key": (422, "UNKNOWN_KEY", stranger.sign(name, "2.0.0")),
        "content changed": (422, "HASH_MISMATCH", content_changed),
        "statement changed": (422, "SIGNATURE_INVALID", _with_statement(good, version="9.0.0")),
        "bad signature": (422, "SIGNATURE_INVALID", bad_sig),
        "wrong payload type": (422, "WRONG_PAYLOAD_TYPE", wrong_type),
        "expired": (422, "EXPIRED", expired),
        "empty content": (422, "EMPTY_CONTENT", {**good, "content": ""}),
        # The envelope's shape is in the document (400); trust rules beyond it are 422.
        "bad base64": (400, "VALIDATION_ERROR", {**good, "content": "%%%"}),
        "no signatures": (422, "UNSIGNED", {**good, "envelope": {
            **good["envelope"], "signatures": []}}),
        "malformed envelope": (400, "VALIDATION_ERROR", {**good, "envelope": {"x": 1}}),
        "one good one bad": (422, "SIGNATURE_INVALID", _two_signatures(good, bad_sig)),
    }


def _two_signatures(good: dict[str, Any], bad: dict[str, Any]) -> dict[str, Any]:
    other = Publisher()
    doc = copy.deepcopy(bad)
    extra = other.sign("x", "1.0.0")["envelope"]["signatures"][0]
    doc["envelope"]["signatures"].append(extra)
    return doc


@pytest.fixture(scope="module")
def refusal_setup(shared_server: ServerProcess) -> tuple[ServerProcess, dict[str, Any]]:
    pub = Publisher()
    pub.register(shared_server)
    return shared_server, _refusal_cases(pub, unique("refused"))


CASES = ["unknown key", "content changed", "statement changed", "bad signature",
         "wrong payload type", "expired", "empty content", "bad base64", "no signatures",
         "malformed envelope", "one good one bad"]


@pytest.mark.parametrize("case", CASES)
def test_upload_refusals(refusal_setup: tuple[ServerProcess, dict[str, Any]], case: str) -> None:
    server, cases = refusal_setup
    status, code, doc = cases[case]
    reply = server.api("POST", "/api/v1/scripts", json_body=doc)
    assert (reply.status, reply.json["code"]) == (status, code), reply.body
    if status == 400:  # refused by the document's schema, before any trust check
        assert reply.json["details"]["field"].startswith("body.")
        return
    assert reply.json["details"]["reason"] == code.lower().replace("signature_invalid",
                                                                   "bad_signature")


def test_revoked_key_refused(shared_server: ServerProcess) -> None:
    s = shared_server
    pub = Publisher()
    key = pub.register(s)
    name = unique("rev")
    assert s.api("POST", "/api/v1/scripts", json_body=pub.sign(name, "1.0.0")).status == 201
    s.api("POST", f"/api/v1/publisher-keys/{key['id']}/revoke")
    refused = s.api("POST", "/api/v1/scripts", json_body=pub.sign(name, "1.1.0"))
    assert refused.status == 422 and refused.json["code"] == "REVOKED_KEY"


def test_upload_body_shape(shared_server: ServerProcess) -> None:
    s = shared_server
    pub = Publisher()
    doc = pub.sign("x", "1.0.0")
    wrong_format = s.api("POST", "/api/v1/scripts", json_body={**doc, "format": "v0"})
    assert wrong_format.status == 400 and wrong_format.json["details"]["field"] == "body.format"
    extra = s.api("POST", "/api/v1/scripts", json_body={**doc, "x": 1})
    assert extra.status == 400 and extra.json["details"]["field"] == "body.x"
    no_content = {k: v for k, v in doc.items() if k != "content"}
    missing = s.api("POST", "/api/v1/scripts", json_body=no_content)
    assert missing.status == 400 and missing.json["details"]["field"] == "body.content"
    big = pub.sign("big", "1.0.0", b"#" * 900_000)
    assert s.api("POST", "/api/v1/scripts", json_body=big).status == 413
