-- The console's OIDC role checks without a lock held across the provider's answer
-- (services/api/console/oidc_sessions.py). Runs with search_path set to the target
-- schema; the table's grants (0013) cover the new columns.
--
-- A request that finds a session's role due for a check claims the check in one
-- short statement (`checking_by`: a fresh id; `checking_until`: when the claim
-- lapses), asks the provider with no transaction open and no pooled connection
-- held, and writes the answer only while the claim is still its own. The other
-- requests for that session, on any replica, wait for the answer without a
-- connection. A claim whose holder died lapses at `checking_until`: the next
-- request claims the check again.
ALTER TABLE api_console_oidc_sessions
  ADD COLUMN checking_by     text,
  ADD COLUMN checking_until  timestamptz,
  ADD CONSTRAINT api_console_oidc_sessions_claim
    CHECK ((checking_by IS NULL) = (checking_until IS NULL));
