-- 0007: safe change at fleet scale (docs/rollouts.md, docs/security.md "Audit log").
-- Force-runs expire and can be cancelled; a policy may carry a rollout block; staged
-- rollouts and their cohorts; the hash-chained audit log.
ALTER TABLE "force_run" ADD COLUMN "expires_at" TIMESTAMP;
ALTER TABLE "force_run" ADD COLUMN "cancelled_at" TIMESTAMP;
CREATE INDEX "force_run_expires_at" ON "force_run" ("expires_at");
ALTER TABLE "policy" ADD COLUMN "rollout" TEXT;
CREATE TABLE "rollout" ("id" SERIAL NOT NULL PRIMARY KEY, "policy_id" INTEGER NOT NULL, "script_name" VARCHAR(128) NOT NULL, "from_version" VARCHAR(64), "to_version" VARCHAR(64) NOT NULL, "state" VARCHAR(16) NOT NULL, "step" INTEGER NOT NULL, "steps" TEXT NOT NULL, "wait_seconds" INTEGER NOT NULL, "min_runs" INTEGER NOT NULL, "max_failure_ratio" DOUBLE PRECISION NOT NULL, "on_failure" VARCHAR(16) NOT NULL, "targets_total" INTEGER NOT NULL, "runs_ok" INTEGER NOT NULL, "runs_failed" INTEGER NOT NULL, "reason" TEXT NOT NULL, "step_started_at" TIMESTAMP NOT NULL, "started_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, FOREIGN KEY ("policy_id") REFERENCES "policy" ("id") ON DELETE CASCADE);
CREATE INDEX "rollout_policy_id" ON "rollout" ("policy_id");
CREATE INDEX "rollout_state" ON "rollout" ("state");
CREATE TABLE "rollout_target" ("id" SERIAL NOT NULL PRIMARY KEY, "rollout_id" INTEGER NOT NULL, "target_id" INTEGER NOT NULL, "step" INTEGER NOT NULL, FOREIGN KEY ("rollout_id") REFERENCES "rollout" ("id") ON DELETE CASCADE, FOREIGN KEY ("target_id") REFERENCES "target" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "rollout_target_rollout_id_target_id" ON "rollout_target" ("rollout_id", "target_id");
CREATE INDEX "rollout_target_target_id" ON "rollout_target" ("target_id");
CREATE TABLE "audit_entry" ("id" BIGSERIAL NOT NULL PRIMARY KEY, "at" TIMESTAMP NOT NULL, "actor_kind" VARCHAR(16) NOT NULL, "actor_name" VARCHAR(128) NOT NULL, "actor_role" VARCHAR(16), "action" VARCHAR(64) NOT NULL, "object_type" VARCHAR(32) NOT NULL, "object_id" VARCHAR(128), "summary" TEXT NOT NULL, "request_id" VARCHAR(64), "source" VARCHAR(128), "prev_hash" VARCHAR(64) NOT NULL, "hash" VARCHAR(64) NOT NULL);
CREATE INDEX "audit_entry_at" ON "audit_entry" ("at");
CREATE INDEX "audit_entry_action" ON "audit_entry" ("action");
CREATE INDEX "audit_entry_actor_name" ON "audit_entry" ("actor_name");
