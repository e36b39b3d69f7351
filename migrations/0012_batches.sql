-- Batches of the OpenAI-compatible Batch API (`POST /v1/batches`): a
-- tenant's input file run line by line, each line a job of priority
-- `batch`. A batch is driven by one API process at a time, the holder of
-- its lease (`lease_owner` until `lease_until`); every holder's write
-- checks that it still holds it, so a process killed mid-step loses
-- nothing and another takes over once the lease runs out.

CREATE TABLE batches (
    id                text        PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tenant_name       text        NOT NULL,
    key_id            text        NOT NULL,
    input_file_id     text        NOT NULL,
    endpoint          text        NOT NULL,
    completion_window text        NOT NULL,
    metadata          jsonb,
    -- validating, failed, in_progress, finalizing, completed, expired,
    -- cancelling, cancelled
    status            text        NOT NULL,
    -- why a batch failed: [{code, line, message, param}]
    errors            jsonb       NOT NULL DEFAULT '[]',
    total             bigint      NOT NULL DEFAULT 0,
    completed         bigint      NOT NULL DEFAULT 0,
    failed            bigint      NOT NULL DEFAULT 0,
    -- the lines' estimated prompt tokens (what `batch_queue_tokens` counts)
    tokens            bigint      NOT NULL DEFAULT 0,
    -- lines whose jobs are accepted, in order: expansion resumes here
    expanded          bigint      NOT NULL DEFAULT 0,
    output_file_id    text,
    error_file_id     text,
    created_at        timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    in_progress_at    timestamptz,
    finalizing_at     timestamptz,
    completed_at      timestamptz,
    failed_at         timestamptz,
    expired_at        timestamptz,
    cancelling_at     timestamptz,
    cancelled_at      timestamptz,
    lease_owner       text,
    lease_until       timestamptz
);

CREATE INDEX batches_tenant_idx ON batches (tenant_id, id);
CREATE INDEX batches_active_idx ON batches (created_at)
    WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling');

-- Each line of a batch: its caller's `custom_id` and the job that runs it.
-- `state` is `open` until the job's end is seen, then that end
-- (`succeeded`, `failed`, `expired`, `canceled`).
CREATE TABLE batch_lines (
    batch_id  text    NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    line      integer NOT NULL,
    custom_id text    NOT NULL,
    job_id    text    NOT NULL,
    state     text    NOT NULL DEFAULT 'open',
    PRIMARY KEY (batch_id, line)
);

CREATE INDEX batch_lines_open_idx ON batch_lines (batch_id, line) WHERE state = 'open';

-- A batch's cost is the sum of its lines' ledger rows.
CREATE INDEX usage_ledger_batch_idx ON usage_ledger ((metadata ->> 'batch_id'))
    WHERE metadata ? 'batch_id';
