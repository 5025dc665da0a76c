-- 0008: each cohort target's runs of the rollout's new version, counted as executions
-- are stored (services/execution_ingest.py), so judging a rollout each second reads
-- its cohort's counters instead of scanning the policy's executions.
ALTER TABLE "rollout_target" ADD COLUMN "runs_ok" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "rollout_target" ADD COLUMN "runs_failed" INTEGER NOT NULL DEFAULT 0;
