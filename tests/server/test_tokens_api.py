"""Admin API tokens and bootstrap tokens: secrets shown once, hashes stored, revocation."""

from __future__ import annotations

from aami.server.models import ApiToken, BootstrapToken
from aami.server.tokens import hash_token
from tests.harness import ServerProcess
from tests.server.helpers import direct_db, unique


def test_api_tokens(shared_server: ServerProcess) -> None:
    s = shared_server
    assert s.api("POST", "/api/v1/tokens", role="operator",
                 json_body={"name": "x", "role": "viewer"}).status == 403
    name = unique("ci")
    created = s.api("POST", "/api/v1/tokens", json_body={"name": name, "role": "operator"})
    assert created.status == 201, created.body
    secret = created.json["token"]
    assert secret.startswith("aami_adm_") and created.json["role"] == "operator"
    with direct_db(s.database_url):
        row = ApiToken.get(ApiToken.name == name)
        assert row.token_hash == hash_token(secret) and secret not in (row.prefix, row.name)

    listed = s.api("GET", "/api/v1/tokens").json["data"]
    assert secret not in str(listed) and name in [t["name"] for t in listed]

    # The new token works at its role, then stops working once revoked.
    assert s.api("POST", "/api/v1/groups", token=secret,
                 json_body={"name": unique("g")}).status == 201
    assert s.api("POST", "/api/v1/tokens", token=secret,
                 json_body={"name": "y", "role": "admin"}).status == 403
    revoked = s.api("POST", f"/api/v1/tokens/{created.json['id']}/revoke")
    assert revoked.status == 200 and revoked.json["revoked"] is True
    after = s.api("GET", "/api/v1/groups", token=secret)
    assert after.status == 401 and after.json["code"] == "INVALID_TOKEN"
    assert s.api("POST", "/api/v1/tokens/999999/revoke").status == 404
    bad_role = s.api("POST", "/api/v1/tokens", json_body={"name": "z", "role": "root"})
    assert bad_role.status == 400 and bad_role.json["details"]["field"] == "body.role"


def test_bootstrap_tokens(shared_server: ServerProcess) -> None:
    s = shared_server
    group = unique("site")
    s.api("POST", "/api/v1/groups", json_body={"name": group})
    created = s.api("POST", "/api/v1/bootstrap-tokens", json_body={
        "name": "rack-7", "max_uses": 40, "expires_in_seconds": 3600, "group": group,
        "allow_rebind": True})
    assert created.status == 201, created.body
    token = created.json
    assert token["token"].startswith("aami_bst_") and token["group"] == group
    assert token["max_uses"] == 40 and token["uses"] == 0 and token["allow_rebind"] is True
    with direct_db(s.database_url):
        assert BootstrapToken.get_by_id(token["id"]).token_hash == hash_token(token["token"])
    default = s.api("POST", "/api/v1/bootstrap-tokens", json_body={}).json
    assert default["max_uses"] == 1 and default["expires_at"] is not None  # 30 days
    at = s.api("POST", "/api/v1/bootstrap-tokens",
               json_body={"expires_at": "2099-01-01T00:00:00Z"}).json
    assert at["expires_at"] == "2099-01-01T00:00:00.000Z"

    listed = s.api("GET", "/api/v1/bootstrap-tokens").json["data"]
    assert token["token"] not in str(listed)
    revoked = s.api("POST", f"/api/v1/bootstrap-tokens/{token['id']}/revoke")
    assert revoked.status == 200 and revoked.json["revoked"] is True
    # 400: what the document states (shape, either/or); 422: what it cannot (the
    # calendar, the clock, a group that must exist).
    for body, status in [({"expires_at": "2000-01-01T00:00:00Z"}, 422),
                         ({"expires_at": "2099-02-30T00:00:00Z"}, 422),
                         ({"expires_at": "soon"}, 400),
                         ({"expires_at": "2099-01-01T00:00:00Z", "expires_in_seconds": 5},
                          400)]:
        reply = s.api("POST", "/api/v1/bootstrap-tokens", json_body=body)
        assert reply.status == status, (body, reply.body)
        assert reply.json["details"]["field"] == "body.expires_at", body
    max_uses = s.api("POST", "/api/v1/bootstrap-tokens", json_body={"max_uses": 0})
    assert max_uses.status == 400 and max_uses.json["details"]["field"] == "body.max_uses"
    unknown_group = s.api("POST", "/api/v1/bootstrap-tokens", json_body={"group": "nope-x"})
    assert unknown_group.status == 422 and unknown_group.json["code"] == "UNKNOWN_GROUP"
    assert s.api("GET", "/api/v1/bootstrap-tokens", role="operator").status == 403
