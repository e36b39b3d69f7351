-- Provider batches: the durable home of jobs handed to a provider's Batch
-- API. A job's RabbitMQ message is acked only once its row here is
-- committed. A batch collects jobs of one target (provider, model,
-- endpoint), then is submitted, then done; workers take batches past
-- collecting by lease (owner, lease_until). Batch ids are ULIDs made by
-- the service; times come from the service's clock, not the server's.

CREATE TABLE provider_batches (
    id            text        PRIMARY KEY,
    provider      text        NOT NULL,
    model         text        NOT NULL,
    -- the endpoint's path, e.g. /v1/chat/completions
    endpoint      text        NOT NULL,
    state         text        NOT NULL DEFAULT 'collecting'
                  CHECK (state IN ('collecting', 'submitting', 'submitted', 'done')),
    -- the provider's id of the batch, once submitted
    remote_id     text,
    -- lines appended (open or not) and the bytes they take in the request
    lines         integer     NOT NULL DEFAULT 0,
    bytes         bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    close_at      timestamptz NOT NULL,
    hedge_at      timestamptz NOT NULL,
    submitted_at  timestamptz,
    finished_at   timestamptz,
    hedged        boolean     NOT NULL DEFAULT false,
    owner         text,
    lease_until   timestamptz
);

-- What `claim` scans: batches not done, oldest first.
CREATE INDEX provider_batches_claim_idx ON provider_batches (created_at, id)
    WHERE state <> 'done';
-- What `append` looks for: the collecting batches of a target.
CREATE INDEX provider_batches_collecting_idx ON provider_batches (provider, model, endpoint, created_at)
    WHERE state = 'collecting';

-- A batch's jobs, until the batch is done (its rows are deleted then).
CREATE TABLE provider_batch_jobs (
    batch_id      text        NOT NULL REFERENCES provider_batches (id) ON DELETE CASCADE,
    job_id        text        NOT NULL,
    -- the job's place in its batch, counting from 0 in the order appended
    seq           integer     NOT NULL,
    -- the serialized BatchedJob: the message and the attempt it went out as
    job           jsonb       NOT NULL,
    -- false once the end of the job's line was settled
    open          boolean     NOT NULL DEFAULT true,
    -- sent back to the queue for real time
    rerouted      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (batch_id, job_id)
);

-- `append` leaves a job that is already in a batch where it is.
CREATE INDEX provider_batch_jobs_job_idx ON provider_batch_jobs (job_id);
