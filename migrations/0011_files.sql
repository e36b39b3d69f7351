-- Files uploaded to the OpenAI-compatible Files API (`POST /v1/files`),
-- for batches. A file belongs to one tenant. Its content is kept in parts
-- of at most 1 MiB, written as the upload streams in and read back one
-- part at a time, so no file is ever held whole in memory. A file becomes
-- visible when its upload's transaction commits; ids are made by the
-- service (`file-` and a ULID, so they sort by time).

CREATE TABLE files (
    id          text        PRIMARY KEY,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    filename    text        NOT NULL,
    bytes       bigint      NOT NULL,
    lines       bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    -- when the file is deleted by retention; null keeps it
    expires_at  timestamptz
);

CREATE INDEX files_tenant_idx ON files (tenant_id, id);
CREATE INDEX files_expires_idx ON files (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE file_parts (
    file_id text    NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    data    bytea   NOT NULL,
    PRIMARY KEY (file_id, seq)
);
