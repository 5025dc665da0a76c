"""Groups through a real server process, on SQLite and PostgreSQL."""

from tests.harness import ServerProcess


def test_group_lifecycle(live_server: ServerProcess) -> None:
    created = live_server.api("POST", "/api/v1/groups",
                              json_body={"name": "ml-training", "priority": 10})
    assert created.status == 201, created.body
    group = created.json
    assert group["name"] == "ml-training" and group["priority"] == 10

    duplicate = live_server.api("POST", "/api/v1/groups", json_body={"name": "ml-training"})
    assert duplicate.status == 409
    assert duplicate.json["code"] == "CONFLICT"

    changed = live_server.api("PATCH", f"/api/v1/groups/{group['id']}",
                              json_body={"poll_interval_seconds": 15})
    assert changed.status == 200 and changed.json["poll_interval_seconds"] == 15

    listed = live_server.api("GET", "/api/v1/groups", role="viewer")
    assert [g["name"] for g in listed.json["data"]] == ["ml-training"]
    assert listed.json["pagination"]["total"] == 1

    assert live_server.api("DELETE", f"/api/v1/groups/{group['id']}").status == 204
    assert live_server.api("GET", f"/api/v1/groups/{group['id']}").status == 404


def test_group_bad_input_names_the_field(live_server: ServerProcess) -> None:
    unknown = live_server.api("POST", "/api/v1/groups", json_body={"name": "a", "prio": 1})
    assert unknown.status == 400
    assert unknown.json == {"error": "body.prio: unknown field", "code": "VALIDATION_ERROR",
                            "details": {"field": "body.prio"}}
    wrong_type = live_server.api("POST", "/api/v1/groups", json_body={"name": 5})
    assert wrong_type.status == 400 and wrong_type.json["details"]["field"] == "body.name"
    malformed = live_server.api("POST", "/api/v1/groups", data=b"{not json",
                                headers={"Content-Type": "application/json"})
    assert malformed.status == 400 and "malformed JSON" in malformed.json["error"]
    viewer = live_server.api("POST", "/api/v1/groups", role="viewer", json_body={"name": "x"})
    assert viewer.status == 403 and viewer.json["code"] == "FORBIDDEN"
    nobody = live_server.api("GET", "/api/v1/groups", role=None)
    assert nobody.status == 401
    bad = live_server.api("GET", "/api/v1/groups", token="aami_adm_not-a-real-token")
    assert bad.status == 401 and bad.json["code"] == "INVALID_TOKEN"
    huge = live_server.api("POST", "/api/v1/groups",
                           json_body={"name": "big", "description": "x" * 2_000_000})
    assert huge.status == 413 and huge.json["code"] == "PAYLOAD_TOO_LARGE"
