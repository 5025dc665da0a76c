"""JSON Schemas of the Agent API bodies and replies (also the OpenAPI document).

Request bodies are open at the top level and in list items: a newer agent may send
a field an older server does not know yet, and a fleet is never upgraded at once.
Every field the server reads is typed and bounded here.
"""

from __future__ import annotations

from aami.server.schemas import HOSTNAME, SECONDS, TIMESTAMP, Schema, nullable, obj

UUID: Schema = {"type": "string",
                "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                           "[0-9a-fA-F]{12}$"}
COUNT: Schema = {"type": "integer", "minimum": 0, "maximum": 2**62}
SYSTEM_INFO: Schema = {"type": "object", "maxProperties": 100}
SHORT: Schema = {"type": "string", "maxLength": 128}
POLICY_ID: Schema = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1}
TOKEN: Schema = {"type": ["string", "null"], "maxLength": 64}

INTERVALS = {"poll_interval_seconds": SECONDS, "heartbeat_interval_seconds": SECONDS}

REGISTER_BODY = obj(["hostname", "agent_version"], {
    "hostname": HOSTNAME,
    "agent_version": {"type": "string", "maxLength": 64},
    "system_info": SYSTEM_INFO,
}, closed=False)
REGISTERED = obj(["target_id", "agent_token", *INTERVALS],
                 {"target_id": {"type": "integer"}, "agent_token": {"type": "string"},
                  **INTERVALS})
ROTATED = obj(["agent_token"], {"agent_token": {"type": "string"}})

HEARTBEAT_BODY = obj(["agent_version", "uptime_seconds"], {
    "agent_version": {"type": "string", "maxLength": 64},
    "uptime_seconds": COUNT,
    "scripts_total": COUNT,
    "scripts_success": COUNT,
    "scripts_failed": COUNT,
    # Cumulative since the agent process started: the fleet's poll success rate.
    "polls_total": COUNT,
    "polls_failed": COUNT,
    "system_info": SYSTEM_INFO,
}, closed=False)
HEARTBEAT_REPLY = obj(list(INTERVALS), INTERVALS)

AGENT_CONFIG = obj(["target_id", "hostname", "groups", *INTERVALS], {
    "target_id": {"type": "integer"}, "hostname": HOSTNAME,
    "groups": {"type": "array", "items": {"type": "string"}}, **INTERVALS})

ASSIGNMENT = obj(
    ["policy_id", "policy_name", "script", "params", "schedule", "timeout_seconds",
     "run_as", "force_token"],
    {"policy_id": {"type": "integer"}, "policy_name": {"type": "string"},
     "script": obj(["name", "version", "sha256", "envelope"], {
         "name": {"type": "string"}, "version": {"type": "string"},
         "sha256": {"type": "string"}, "envelope": {"type": "object"}}),
     "params": {"type": "object"},
     "schedule": obj(["mode", "interval_seconds"], {
         "mode": {"enum": ["interval", "once"]},
         "interval_seconds": nullable({"type": "integer"})}),
     "timeout_seconds": {"type": "integer"},
     "run_as": nullable({"type": "string"}),
     "force_token": nullable({"type": "string"})})
ASSIGNMENTS = obj(["etag", "assignments"], {
    "etag": {"type": "string"}, "assignments": {"type": "array", "items": ASSIGNMENT}})

EXECUTION = obj(["id", "script_name", "script_version", "script_hash", "started_at",
                 "success"], {
    "id": UUID,
    "policy_id": POLICY_ID,
    "script_name": SHORT,
    "script_version": {"type": "string", "maxLength": 64},
    "script_hash": {"type": "string", "maxLength": 64},
    "started_at": TIMESTAMP,
    "finished_at": nullable(TIMESTAMP),
    "duration_ms": nullable(COUNT),
    "exit_code": {"type": ["integer", "null"], "minimum": -(2**31), "maximum": 2**31 - 1},
    "success": {"type": "boolean"},
    "stdout": nullable({"type": "string"}),
    "stderr": nullable({"type": "string"}),
    "error_message": nullable({"type": "string"}),
    "force_token": TOKEN,
    "trigger": nullable({"enum": ["schedule", "once", "force"]}),
}, closed=False)
EXECUTIONS_BODY = obj(["executions"], {"executions": {"type": "array", "items": EXECUTION}},
                      closed=False)
INGESTED = obj(["accepted", "duplicates"], {"accepted": COUNT, "duplicates": COUNT})

SECURITY_EVENT = obj(["id", "occurred_at", "reason"], {
    "id": UUID,
    "occurred_at": TIMESTAMP,
    "policy_id": POLICY_ID,
    "script_name": nullable({"type": "string", "maxLength": 128}),
    "script_version": nullable({"type": "string", "maxLength": 64}),
    "script_hash": nullable({"type": "string", "maxLength": 64}),
    "reason": {"type": "string", "minLength": 1, "maxLength": 64},
    "message": nullable({"type": "string"}),
}, closed=False)
EVENTS_BODY = obj(["events"], {"events": {"type": "array", "items": SECURITY_EVENT}},
                  closed=False)
