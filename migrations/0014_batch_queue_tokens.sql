-- A tenant's limit on the estimated prompt tokens it may have in Batch API
-- batches in progress (OpenAI's enqueued token limit). NULL means the
-- config's `[batches] queue_tokens` (and no limit when that is unset too).
ALTER TABLE tenants
    ADD COLUMN batch_queue_tokens bigint CHECK (batch_queue_tokens > 0);
