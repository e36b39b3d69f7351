-- Monthly spend caps, and each tenant's spend per month, kept in step with
-- the ledger (the same statement adds each newly recorded job's cost).
ALTER TABLE tenants
    ADD COLUMN monthly_budget_micros bigint CHECK (monthly_budget_micros >= 0);

CREATE TABLE tenant_spend (
    tenant_id    uuid        NOT NULL,
    month        date        NOT NULL,
    cost_micros  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
);

-- Optional caps per key, and each key's spend per month, kept likewise.
ALTER TABLE api_keys
    ADD COLUMN monthly_budget_micros bigint CHECK (monthly_budget_micros >= 0);

CREATE TABLE key_spend (
    key_id       uuid        NOT NULL,
    month        date        NOT NULL,
    cost_micros  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, month)
);
