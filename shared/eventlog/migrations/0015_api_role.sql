-- The API's own role. Runs with search_path set to the target schema;
-- {{api_role}} is the role the API logs in as, {{app_role}} the one every other
-- service but the projector logs in as, {{reader_role}} the read-only one.
--
-- The console's two tables (migration 0013) hold secrets: the keys that sign
-- every session cookie (whoever reads one can forge an admin's session) and
-- OIDC refresh tokens. Granted to {{app_role}}, they were readable with the
-- credentials of any service (executor, notifier, gitwatcher…). Now they are
-- the API's alone.
--
-- The API does everything the services' role may (append events, API keys,
-- snapshots, …): it is a member of {{app_role}} and inherits its rights, so
-- they stay in step as later migrations grant that role more. Membership goes
-- one way only: {{app_role}} gains nothing of {{api_role}}'s.

DO $$
BEGIN
  CREATE ROLE {{api_role}} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT {{app_role}} TO {{api_role}};

-- Whatever anyone held on them (0013's grants, default privileges, PUBLIC),
-- only the API keeps.
REVOKE ALL ON api_console_session_keys, api_console_oidc_sessions
  FROM PUBLIC, {{app_role}}, {{reader_role}};
GRANT SELECT, INSERT, DELETE ON api_console_session_keys TO {{api_role}};
GRANT SELECT, INSERT, UPDATE, DELETE ON api_console_oidc_sessions TO {{api_role}};

-- A later table that holds secrets is granted to {{api_role}} (or its owner's
-- own role), never to {{app_role}}, and never created by {{projector_role}}:
-- 0008's default privileges hand everything the projector creates to
-- {{app_role}} and {{reader_role}}. tests/security/test_console_secrets.py
-- lists every privilege the reader holds, and every one the API holds beyond
-- {{app_role}}, and compares them with the intended lists: a new grant to
-- either fails there until someone decides it belongs.
