-- 0006: what the server needs to report the fleet's success metrics
-- (server/services/fleet_health.py): the poll counters each agent last reported, and
-- heartbeat/poll outcomes summed per minute for the fleet and per hour per target.
ALTER TABLE "agent_status" ADD COLUMN "polls_total" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "agent_status" ADD COLUMN "polls_failed" BIGINT NOT NULL DEFAULT 0;
CREATE TABLE "fleet_health_minute" ("minute" TIMESTAMP NOT NULL PRIMARY KEY, "heartbeat_gaps" BIGINT NOT NULL DEFAULT 0, "heartbeat_gaps_ok" BIGINT NOT NULL DEFAULT 0, "polls" BIGINT NOT NULL DEFAULT 0, "polls_failed" BIGINT NOT NULL DEFAULT 0);
CREATE TABLE "target_health_hour" ("target_id" INTEGER NOT NULL, "hour" TIMESTAMP NOT NULL, "heartbeat_gaps" BIGINT NOT NULL DEFAULT 0, "heartbeat_gaps_ok" BIGINT NOT NULL DEFAULT 0, "polls" BIGINT NOT NULL DEFAULT 0, "polls_failed" BIGINT NOT NULL DEFAULT 0, PRIMARY KEY ("target_id", "hour"), FOREIGN KEY ("target_id") REFERENCES "target" ("id") ON DELETE CASCADE);
CREATE INDEX "target_health_hour_hour" ON "target_health_hour" ("hour");
