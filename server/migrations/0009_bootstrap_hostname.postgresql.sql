-- 0009: a bootstrap token may be scoped to one hostname (services/registration.py):
-- it registers that hostname only, and may claim it when an admin created the
-- target in advance, without the power to re-bind every other node.
ALTER TABLE "bootstrap_token" ADD COLUMN "hostname" VARCHAR(253);
