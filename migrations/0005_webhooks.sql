-- Webhooks: each tenant's signing secret for the URLs its jobs name, its
-- registered endpoints (each with a secret of its own), and every delivery
-- with every attempt. A rotation keeps the replaced secret signing until
-- previous_until. Delivery ids are ULIDs made by the service.

CREATE TABLE webhook_secrets (
    tenant_id        uuid        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    secret           text        NOT NULL,
    previous_secret  text,
    previous_until   timestamptz,
    rotated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_endpoints (
    id               text        PRIMARY KEY,
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url              text        NOT NULL,
    events           text[]      NOT NULL,
    secret           text        NOT NULL,
    previous_secret  text,
    previous_until   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz,
    disabled_reason  text
);

CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_deliveries (
    id               text        PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    job_id           text        NOT NULL,
    webhook_id       text        NOT NULL,
    event            text        NOT NULL,
    -- the endpoint's id, or '' for the URL the job named
    target           text        NOT NULL,
    url              text        NOT NULL,
    body             text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'succeeded', 'exhausted', 'gone', 'disabled')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, target)
);

CREATE INDEX webhook_deliveries_job_idx ON webhook_deliveries (tenant_id, job_id);
CREATE INDEX webhook_deliveries_state_idx ON webhook_deliveries (state) WHERE state = 'exhausted';

CREATE TABLE webhook_attempts (
    delivery_id      text        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt          integer     NOT NULL,
    attempted_at     timestamptz NOT NULL,
    status_code      integer,
    latency_ms       bigint      NOT NULL,
    error            text,
    next_attempt_at  timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
