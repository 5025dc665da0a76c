-- 0004: web UI sessions (server-side; the cookie carries only a random id).
CREATE TABLE "ui_session" ("id" VARCHAR(64) NOT NULL PRIMARY KEY, "api_token_id" INTEGER NOT NULL, "csrf_token" VARCHAR(64) NOT NULL, "created_at" DATETIME NOT NULL, "last_seen_at" DATETIME NOT NULL, "expires_at" DATETIME NOT NULL, FOREIGN KEY ("api_token_id") REFERENCES "api_token" ("id") ON DELETE CASCADE);
CREATE INDEX "ui_session_api_token_id" ON "ui_session" ("api_token_id");
CREATE INDEX "ui_session_expires_at" ON "ui_session" ("expires_at");
-- The dashboard's time-window aggregates (outcomes per hour, failing policies) read
-- only this index: an index-only range scan instead of one table row per execution.
CREATE INDEX "script_executions_window" ON "script_executions" ("started_at", "success", "script_policy_id", "target_id");
