"""Peewee models: the server's stored state.

Times are naive UTC datetimes in the database and RFC 3339 `Z` strings on the wire.
JSON columns are text (portable across SQLite and PostgreSQL). Tokens are never
stored: only their SHA-256 hashes and a short display prefix.

The tables are created by the versioned migrations in `server/migrations/`, not by
`create_tables`; `tests/server/test_migrations.py` checks that these models and the
migrated schema agree, column by column.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import peewee

from aami.server.timefmt import utcnow

database_proxy = peewee.DatabaseProxy()


class JSONField(peewee.TextField):
    """JSON stored as text, so SQLite and PostgreSQL behave the same."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Group(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]

    name = peewee.CharField(max_length=128, unique=True)
    description = peewee.TextField(default="")
    priority = peewee.IntegerField(default=0)
    poll_interval_seconds = peewee.IntegerField(null=True)
    heartbeat_interval_seconds = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class Target(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]

    hostname = peewee.CharField(max_length=253, unique=True)
    labels = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class TargetGroup(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        target_id: peewee.Field[int]
        group_id: peewee.Field[int]

    target = peewee.ForeignKeyField(Target, on_delete="CASCADE", backref="memberships")
    group = peewee.ForeignKeyField(Group, on_delete="CASCADE", backref="memberships")

    class Meta:
        indexes = ((("target", "group"), True),)


class PublisherKey(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]

    name = peewee.CharField(max_length=128, unique=True)
    key_id = peewee.CharField(max_length=64, unique=True)
    public_key = peewee.TextField()
    revoked = peewee.BooleanField(default=False)
    revoked_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)


class Script(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        key_id: peewee.Field[int]

    name = peewee.CharField(max_length=128, index=True)
    version = peewee.CharField(max_length=64)
    # Numeric version parts, so "latest" and "higher than" are plain SQL orderings.
    version_major = peewee.IntegerField()
    version_minor = peewee.IntegerField()
    version_patch = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64, index=True)
    content = peewee.BlobField()
    envelope = JSONField()
    key = peewee.ForeignKeyField(PublisherKey, on_delete="RESTRICT", backref="scripts")
    interpreter = peewee.CharField(max_length=255)
    timeout_seconds = peewee.IntegerField()
    params_schema = JSONField(default=dict)
    expires_at = peewee.DateTimeField(null=True)
    run_as = JSONField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("name", "version"), True),)


class Policy(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        group_id: peewee.Field[int | None]
        target_id: peewee.Field[int | None]

    name = peewee.CharField(max_length=128, unique=True)
    script_name = peewee.CharField(max_length=128, index=True)
    version = peewee.CharField(max_length=64, default="latest")
    scope = peewee.CharField(max_length=16)  # global | group | target
    group = peewee.ForeignKeyField(Group, null=True, on_delete="CASCADE", backref="policies")
    target = peewee.ForeignKeyField(Target, null=True, on_delete="CASCADE", backref="policies")
    params = JSONField(default=dict)
    schedule_mode = peewee.CharField(max_length=16, default="interval")  # interval | once
    interval_seconds = peewee.IntegerField(null=True)
    timeout_seconds = peewee.IntegerField(null=True)
    run_as = peewee.CharField(max_length=64, null=True)
    priority = peewee.IntegerField(default=0)
    enabled = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    # Staged rollout settings (services/rollouts.py); None: new versions go out at once.
    rollout = JSONField(null=True)


class ApiToken(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]

    name = peewee.CharField(max_length=128)
    role = peewee.CharField(max_length=16)  # viewer | operator | admin
    token_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    revoked = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
    last_used_at = peewee.DateTimeField(null=True)


class UiSession(BaseModel):
    """A web UI login (server/services/ui_sessions.py): only the id's SHA-256 is stored."""

    id = peewee.CharField(max_length=64, primary_key=True)  # sha256(session id)
    api_token = peewee.ForeignKeyField(ApiToken, on_delete="CASCADE")
    csrf_token = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)
    last_seen_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "ui_session"


class BootstrapToken(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        group_id: peewee.Field[int | None]

    name = peewee.CharField(max_length=128, default="")
    token_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    max_uses = peewee.IntegerField(default=1)
    uses = peewee.IntegerField(default=0)
    expires_at = peewee.DateTimeField(null=True)
    group = peewee.ForeignKeyField(Group, null=True, on_delete="SET NULL")
    # May this token re-bind a hostname that already has an agent? (re-imaged nodes)
    allow_rebind = peewee.BooleanField(default=False)
    # Scoped to one node: registers only this hostname, and may claim its target
    # when an admin created it in advance (services/registration.py).
    hostname = peewee.CharField(max_length=253, null=True)
    revoked = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)


class AgentToken(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        target_id: peewee.Field[int]

    target = peewee.ForeignKeyField(Target, on_delete="CASCADE", backref="agent_tokens")
    token_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)


class AgentStatus(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        target_id: peewee.Field[int]

    target = peewee.ForeignKeyField(
        Target, primary_key=True, on_delete="CASCADE", backref="agent_status"
    )
    agent_version = peewee.CharField(max_length=64, default="")
    last_heartbeat = peewee.DateTimeField(null=True, index=True)
    last_poll = peewee.DateTimeField(null=True)
    uptime_seconds = peewee.BigIntegerField(default=0)
    scripts_total = peewee.BigIntegerField(default=0)
    scripts_success = peewee.BigIntegerField(default=0)
    scripts_failed = peewee.BigIntegerField(default=0)
    heartbeat_interval_seconds = peewee.IntegerField(default=30)
    system_info = JSONField(default=dict)
    # The agent's own poll counters as its last heartbeat reported them (cumulative
    # since that agent process started): the next heartbeat's deltas are its polls.
    polls_total = peewee.BigIntegerField(default=0)
    polls_failed = peewee.BigIntegerField(default=0)


class FleetHealthMinute(BaseModel):
    """Heartbeat gaps and polls of the whole fleet, summed per minute
    (server/services/fleet_health.py)."""

    minute = peewee.DateTimeField(primary_key=True)
    heartbeat_gaps = peewee.BigIntegerField(default=0)
    heartbeat_gaps_ok = peewee.BigIntegerField(default=0)  # within interval ± tolerance
    polls = peewee.BigIntegerField(default=0)
    polls_failed = peewee.BigIntegerField(default=0)


class TargetHealthHour(BaseModel):
    """The same sums for one target, per hour."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        target_id: peewee.Field[int]

    target = peewee.ForeignKeyField(Target, on_delete="CASCADE")
    hour = peewee.DateTimeField(index=True)
    heartbeat_gaps = peewee.BigIntegerField(default=0)
    heartbeat_gaps_ok = peewee.BigIntegerField(default=0)
    polls = peewee.BigIntegerField(default=0)
    polls_failed = peewee.BigIntegerField(default=0)

    class Meta:
        primary_key = peewee.CompositeKey("target", "hour")


class ForceRun(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        policy_id: peewee.Field[int]
        target_id: peewee.Field[int | None]
        group_id: peewee.Field[int | None]

    policy = peewee.ForeignKeyField(Policy, on_delete="CASCADE", backref="force_runs")
    target = peewee.ForeignKeyField(Target, null=True, on_delete="CASCADE")
    group = peewee.ForeignKeyField(Group, null=True, on_delete="CASCADE")
    token = peewee.CharField(max_length=64, unique=True)
    requested_by = peewee.CharField(max_length=128, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True, index=True)  # agents stop receiving it then
    cancelled_at = peewee.DateTimeField(null=True)


class ForceRunTarget(BaseModel):
    """One target's share of a force-run request: pending until its execution arrives."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        force_run_id: peewee.Field[int]
        target_id: peewee.Field[int]

    force_run = peewee.ForeignKeyField(ForceRun, on_delete="CASCADE", backref="targets")
    target = peewee.ForeignKeyField(Target, on_delete="CASCADE")
    execution_id = peewee.CharField(max_length=36, null=True)
    # pending | delivered | done | failed | expired | cancelled (services/force_runs.py)
    status = peewee.CharField(max_length=16, default="pending")
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("force_run", "target"), True), (("target", "status"), False))


class ScriptExecution(BaseModel):
    if TYPE_CHECKING:  # attributes peewee adds at runtime
        target_id: peewee.Field[int]
        script_policy_id: peewee.Field[int | None]

    # The UUID the agent made before running: the identity everywhere (idempotency).
    id = peewee.CharField(max_length=36, primary_key=True)
    target = peewee.ForeignKeyField(Target, on_delete="CASCADE")
    script_policy = peewee.ForeignKeyField(Policy, null=True, on_delete="SET NULL")
    script_name = peewee.CharField(max_length=128)
    script_version = peewee.CharField(max_length=64)
    script_hash = peewee.CharField(max_length=64)
    started_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)
    duration_ms = peewee.BigIntegerField(null=True)
    exit_code = peewee.IntegerField(null=True)
    success = peewee.BooleanField()
    stdout = peewee.TextField(default="")
    stderr = peewee.TextField(default="")
    error_message = peewee.TextField(null=True)
    trigger = peewee.CharField(max_length=16, default="schedule")
    force_token = peewee.CharField(max_length=64, null=True)
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "script_executions"
        # Keyset paging walks (started_at DESC, id DESC), globally and per target.
        indexes = (
            (("started_at", "id"), False),
            (("target", "started_at", "id"), False),
            (("script_policy", "started_at"), False),
            (("script_name", "started_at"), False),
        )


class SecurityEvent(BaseModel):
    """A refusal an agent reported: the script it would not run and why."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        target_id: peewee.Field[int]
        policy_id: peewee.Field[int | None]

    id = peewee.CharField(max_length=36, primary_key=True)
    target = peewee.ForeignKeyField(Target, on_delete="CASCADE")
    policy = peewee.ForeignKeyField(Policy, null=True, on_delete="SET NULL")
    script_name = peewee.CharField(max_length=128, default="")
    script_version = peewee.CharField(max_length=64, default="")
    script_hash = peewee.CharField(max_length=64, default="")
    reason = peewee.CharField(max_length=64)
    message = peewee.TextField(default="")
    occurred_at = peewee.DateTimeField(index=True)
    received_at = peewee.DateTimeField(default=utcnow)


class Job(BaseModel):
    """A long operation (group force-run, pruning, import) with readable progress."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]

    kind = peewee.CharField(max_length=32)
    status = peewee.CharField(max_length=16, default="queued")  # queued|running|done|failed
    progress_done = peewee.IntegerField(default=0)
    progress_total = peewee.IntegerField(default=0)
    detail = JSONField(default=dict)
    error = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)


class ConfigRevision(BaseModel):
    """One row whose counter moves on every change that can alter assignments.

    Server processes compare it (cheaply, about once a second) with the revision
    their caches were built from; that is how a change made through one process
    reaches agents polling another.
    """

    id = peewee.IntegerField(primary_key=True)
    value = peewee.BigIntegerField(default=0)
    changed_at = peewee.DateTimeField(default=utcnow)


ALL_MODELS: tuple[type[BaseModel], ...] = (
    Group,
    Target,
    TargetGroup,
    PublisherKey,
    Script,
    Policy,
    ApiToken,
    BootstrapToken,
    AgentToken,
    AgentStatus,
    FleetHealthMinute,
    TargetHealthHour,
    ForceRun,
    ForceRunTarget,
    ScriptExecution,
    SecurityEvent,
    Job,
    ConfigRevision,
)


class Rollout(BaseModel):
    """One staged rollout of a policy's new script version (services/rollouts.py)."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        policy_id: peewee.Field[int]

    policy = peewee.ForeignKeyField(Policy, on_delete="CASCADE", backref="rollouts")
    script_name = peewee.CharField(max_length=128)
    from_version = peewee.CharField(max_length=64, null=True)
    to_version = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=16, index=True)
    step = peewee.IntegerField(default=0)
    steps = JSONField()
    wait_seconds = peewee.IntegerField()
    min_runs = peewee.IntegerField()
    max_failure_ratio = peewee.DoubleField()
    on_failure = peewee.CharField(max_length=16)
    targets_total = peewee.IntegerField(default=0)
    runs_ok = peewee.IntegerField(default=0)
    runs_failed = peewee.IntegerField(default=0)
    reason = peewee.TextField(default="")
    step_started_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class RolloutTarget(BaseModel):
    """A target in a rollout's cohort; once in, it stays in as the rollout advances."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]
        rollout_id: peewee.Field[int]
        target_id: peewee.Field[int]

    rollout = peewee.ForeignKeyField(Rollout, on_delete="CASCADE", backref="cohort")
    target = peewee.ForeignKeyField(Target, on_delete="CASCADE")
    step = peewee.IntegerField()  # the step that added it
    # Its runs of the new version while the rollout runs (services/execution_ingest.py).
    runs_ok = peewee.IntegerField(default=0)
    runs_failed = peewee.IntegerField(default=0)

    class Meta:
        indexes = ((("rollout", "target"), True),)


class AuditEntry(BaseModel):
    """One state-changing action, hash-chained to the one before (services/audit.py)."""

    if TYPE_CHECKING:  # attributes peewee adds at runtime
        id: peewee.AutoField[int]

    id = peewee.BigAutoField()
    at = peewee.DateTimeField(index=True)
    actor_kind = peewee.CharField(max_length=16)  # token | session | cli | agent | server
    actor_name = peewee.CharField(max_length=128, index=True)
    actor_role = peewee.CharField(max_length=16, null=True)
    action = peewee.CharField(max_length=64, index=True)
    object_type = peewee.CharField(max_length=32)
    object_id = peewee.CharField(max_length=128, null=True)
    summary = JSONField()
    request_id = peewee.CharField(max_length=64, null=True)
    source = peewee.CharField(max_length=128, null=True)
    prev_hash = peewee.CharField(max_length=64)
    hash = peewee.CharField(max_length=64)


ALL_MODELS += (Rollout, RolloutTarget, AuditEntry)
