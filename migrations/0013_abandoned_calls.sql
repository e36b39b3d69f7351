-- Calls a worker's router gave up on after their request reached the
-- provider (a client-side timeout, a connection or stream broken midway)
-- and made again: the provider may have billed each, so each is a
-- repeated call of its own, keyed by the job, its attempt and the call's
-- number among those the attempt abandoned (from 1). Every other row has
-- call_index 0.
ALTER TABLE usage_ledger
    ADD COLUMN call_index integer NOT NULL DEFAULT 0 CHECK (call_index >= 0);
ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pkey;
ALTER TABLE usage_ledger ADD PRIMARY KEY (job_id, attempt, call_index);
