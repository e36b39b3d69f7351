-- The job's trace id, so that each webhook attempt carries a `traceparent`
-- in the job's trace.
ALTER TABLE webhook_deliveries ADD COLUMN trace_id text;
