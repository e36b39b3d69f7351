-- Per-tenant rate limits, enforced by every API replica through Redis.
-- NULL means the config's default (and no limit when that is unset too).
ALTER TABLE tenants
    ADD COLUMN requests_per_minute bigint CHECK (requests_per_minute > 0),
    ADD COLUMN tokens_per_minute   bigint CHECK (tokens_per_minute > 0);
