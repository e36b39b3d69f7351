-- A key's default priority class: the class of its jobs that name none
-- (a batch pipeline's key sends `batch` jobs without saying so).
ALTER TABLE api_keys ADD COLUMN default_priority text
    CHECK (default_priority IN ('interactive', 'standard', 'batch'));
