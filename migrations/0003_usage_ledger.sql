-- The usage ledger: one row per finished job, written by the worker in the
-- same step that acks the job's batch. The job id is the key, so a job is
-- never counted twice, however often its message was delivered.
CREATE TABLE usage_ledger (
    job_id              text        PRIMARY KEY,
    tenant_id           uuid        NOT NULL,
    key_id              uuid,
    model               text        NOT NULL,
    provider            text,
    endpoint            text        NOT NULL,
    feature             text,
    route               text,
    metadata            jsonb       NOT NULL DEFAULT '{}',
    status              text        NOT NULL,
    prompt_tokens       bigint      NOT NULL DEFAULT 0,
    cached_tokens       bigint      NOT NULL DEFAULT 0,
    cache_write_tokens  bigint      NOT NULL DEFAULT 0,
    completion_tokens   bigint      NOT NULL DEFAULT 0,
    cost_micros         bigint      NOT NULL DEFAULT 0,
    saved_micros        bigint      NOT NULL DEFAULT 0,
    cache_hit           boolean     NOT NULL DEFAULT false,
    queue_wait_ms       bigint,
    provider_latency_ms bigint,
    finished_at         timestamptz NOT NULL
);

-- Reports read one tenant's rows in a time range; the index carries every
-- column a report groups or sums, so it is answered from the index alone.
CREATE INDEX usage_ledger_tenant_finished ON usage_ledger (tenant_id, finished_at)
    INCLUDE (model, provider, feature, route, prompt_tokens, cached_tokens,
             completion_tokens, cost_micros, saved_micros);

-- Daily totals per tenant and label, kept in step with the ledger by the
-- same statement that inserts its rows, so that reports over whole days
-- read a few rows per group instead of every job's.
CREATE TABLE usage_daily (
    tenant_id          uuid    NOT NULL,
    day                date    NOT NULL,
    model              text    NOT NULL,
    provider           text    NOT NULL DEFAULT '',
    feature            text    NOT NULL DEFAULT '',
    route              text    NOT NULL DEFAULT '',
    jobs               bigint  NOT NULL DEFAULT 0,
    prompt_tokens      bigint  NOT NULL DEFAULT 0,
    cached_tokens      bigint  NOT NULL DEFAULT 0,
    completion_tokens  bigint  NOT NULL DEFAULT 0,
    cost_micros        bigint  NOT NULL DEFAULT 0,
    saved_micros       bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, model, provider, feature, route)
);
CREATE INDEX usage_daily_day ON usage_daily (day);
