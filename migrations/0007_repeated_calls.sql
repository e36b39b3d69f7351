-- Repeated provider calls: a job's row is attempt 0; a call the provider
-- billed for the job beyond the one whose answer it kept (its worker died
-- mid-call, or another delivery ended the job first) is a row of its own,
-- keyed by the job and that attempt's number. An orphaned attempt's
-- completion is estimated: `estimated_micros` holds that part of its cost
-- (`cost_micros` the exact part), `estimated_by` how it was estimated.
ALTER TABLE usage_ledger
    ADD COLUMN attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    ADD COLUMN estimated_micros bigint  NOT NULL DEFAULT 0,
    ADD COLUMN estimated_by     text;
ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pkey;
ALTER TABLE usage_ledger ADD PRIMARY KEY (job_id, attempt);

DROP INDEX usage_ledger_tenant_finished;
CREATE INDEX usage_ledger_tenant_finished ON usage_ledger (tenant_id, finished_at)
    INCLUDE (model, provider, feature, route, prompt_tokens, cached_tokens,
             completion_tokens, cost_micros, saved_micros, attempt, estimated_micros);

ALTER TABLE usage_daily
    ADD COLUMN repeated_calls   bigint NOT NULL DEFAULT 0,
    ADD COLUMN estimated_micros bigint NOT NULL DEFAULT 0;
