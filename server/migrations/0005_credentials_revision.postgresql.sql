-- 0005: a second counter in config_revision (row 2), moved by every credential
-- revocation, so each process can cache resolved tokens for minutes and still drop
-- a revoked one within a watcher period (server/auth.py).
INSERT INTO "config_revision" ("id", "value", "changed_at") VALUES (2, 0, CURRENT_TIMESTAMP);
