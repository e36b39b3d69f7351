-- Fair share between tenants (issue 19). A tenant's weight against other
-- tenants while their jobs wait for provider capacity (NULL: 1), and a
-- key's cap on its jobs in flight at once, fleet-wide (NULL: no cap).
-- The API puts both on each job's message; the workers enforce them.
ALTER TABLE tenants
    ADD COLUMN fair_weight integer CHECK (fair_weight > 0);

ALTER TABLE api_keys
    ADD COLUMN max_inflight integer CHECK (max_inflight > 0);
