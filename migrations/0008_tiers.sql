-- Cost tiers: each ledger row says how its job was answered (cache,
-- realtime, flex, provider_batch; null for a job that was not), and the
-- daily totals are kept per tier too, so that `group_by=tier` reads them.
ALTER TABLE usage_ledger ADD COLUMN tier text;

DROP INDEX usage_ledger_tenant_finished;
CREATE INDEX usage_ledger_tenant_finished ON usage_ledger (tenant_id, finished_at)
    INCLUDE (model, provider, feature, route, tier, prompt_tokens, cached_tokens,
             completion_tokens, cost_micros, saved_micros, attempt, estimated_micros);

-- Rows recorded before tiers were all standard calls or cache hits.
UPDATE usage_ledger SET tier = CASE WHEN cache_hit THEN 'cache' ELSE 'realtime' END
    WHERE status = 'succeeded' OR attempt > 0;

ALTER TABLE usage_daily ADD COLUMN tier text NOT NULL DEFAULT '';
ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_pkey;
ALTER TABLE usage_daily ADD PRIMARY KEY (tenant_id, day, model, provider, feature, route, tier);
