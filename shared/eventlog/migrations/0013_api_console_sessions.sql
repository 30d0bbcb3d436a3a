-- The web console's sessions (services/api/console). Runs with search_path set
-- to the target schema; {{app_role}} is the role services log in as.
--
-- The keys that sign session cookies, shared by every API replica so a session
-- issued by one works on all (`session_keys.py`). The first replica to start
-- stores key 1 (INSERT … ON CONFLICT DO NOTHING: the first writer wins, every
-- replica reads back the same); a rotation stores the next number; keys no
-- session can carry any more are deleted. Secrets, so never events: the log is
-- kept forever and read by subscribers.
CREATE TABLE api_console_session_keys (
  kid         integer     PRIMARY KEY CHECK (kid > 0),
  secret      bytea       NOT NULL CHECK (length(secret) >= 32),
  created_at  timestamptz NOT NULL
);

GRANT SELECT, INSERT, DELETE ON api_console_session_keys TO {{app_role}};

-- Sessions of people signed in by OIDC (`oidc_sessions.py`): the cookie names
-- the row. The role is re-checked with the provider every role-check interval
-- (its refresh token, kept here, never in the browser); a row whose check
-- fails, or that ends (`expires_at`, sign-out), is deleted with its session.
CREATE TABLE api_console_oidc_sessions (
  session_id     text        PRIMARY KEY,
  person         text        NOT NULL,
  subject        text        NOT NULL,
  role           text        NOT NULL CHECK (role IN ('read-only', 'read-write', 'admin')),
  refresh_token  text        NOT NULL,
  checked_at     timestamptz NOT NULL,
  expires_at     timestamptz NOT NULL
);
CREATE INDEX api_console_oidc_sessions_expiry ON api_console_oidc_sessions (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON api_console_oidc_sessions TO {{app_role}};
