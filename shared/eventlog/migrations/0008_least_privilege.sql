-- The database keeps the log's rules, not only the code (DESIGN §14). Runs
-- with search_path set to the target schema; {{app_role}} is the role the
-- services log in as, {{projector_role}} the one the projector (and
-- `slipway replay`) log in as, {{reader_role}} a read-only one for query paths
-- that need nothing else (`slipway analysis rejudge`, audits).
--
-- Whoever holds a service's credentials can then still only append to the
-- log: never choose where an event lands in it or when it was recorded, never
-- rewrite, truncate, drop or alter it, never switch its triggers off, never
-- create objects next to it. None of these roles owns a table of the log: privileges
-- a role has on what it owns (ALTER, DROP, TRUNCATE, DISABLE TRIGGER) cannot be
-- revoked, so the migration owner keeps them all.

DO $$
BEGIN
  CREATE ROLE {{projector_role}} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
  CREATE ROLE {{reader_role}} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- The ordering columns are the database's to assign: `global_position` (the
-- identity; OVERRIDING SYSTEM VALUE would otherwise let a writer pick it),
-- `tx_id` (commit-safe readers rely on it being the writer's own transaction,
-- see shared/eventlog/store.py) and `recorded_at` (what "as of a time" reads
-- trust). Column grants list what a writer may give; the rest gets its default.
REVOKE INSERT ON events FROM {{app_role}};
GRANT INSERT (stream_id, stream_version, event_id, event_type, schema_version, payload, metadata)
  ON events TO {{app_role}};
-- Stage logs and dead letters are append-only records too: same discipline.
REVOKE INSERT ON stage_logs FROM {{app_role}};
GRANT INSERT (deployment_id, stage_id, severity, message) ON stage_logs TO {{app_role}};
REVOKE INSERT ON dead_letters FROM {{app_role}};
GRANT INSERT (consumer, subject, stream_seq, deliveries, headers, data, error)
  ON dead_letters TO {{app_role}};
-- The triggers refuse TRUNCATE of events to the owner; stage logs had only the grant.
CREATE TRIGGER stage_logs_no_truncate BEFORE TRUNCATE ON stage_logs
  FOR EACH STATEMENT EXECUTE FUNCTION stage_logs_are_append_only();

-- Projections (read models) are the one thing built at run time: generation
-- tables and their views are created, swapped and dropped as projection
-- versions change (shared/projections/). That needs CREATE on the schema, so it
-- is the projector's role alone that has it, and it owns only what it builds;
-- it reads the log and writes nothing else. Every other service reads the
-- projections through the default privileges below.
DO $$
DECLARE
  owned record;
BEGIN
  EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, {{app_role}}', current_schema());
  EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO {{projector_role}}', current_schema());
  EXECUTE format(
    'ALTER DEFAULT PRIVILEGES FOR ROLE {{projector_role}} IN SCHEMA %I '
    'GRANT SELECT ON TABLES TO {{app_role}}, {{reader_role}}', current_schema());
  -- Before this migration the services' role built the projections: hand what
  -- it built to the projector, and keep its right to read it.
  FOR owned IN
    SELECT c.relname, c.relkind FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace
      AND c.relowner = '{{app_role}}'::regrole AND c.relkind IN ('r', 'p', 'v', 'm')
  LOOP
    EXECUTE format('ALTER %s %I OWNER TO {{projector_role}}',
                   CASE owned.relkind WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                   owned.relname);
    EXECUTE format('GRANT SELECT ON %I TO {{app_role}}, {{reader_role}}', owned.relname);
  END LOOP;
END $$;
GRANT SELECT ON events TO {{projector_role}};
GRANT SELECT, INSERT, UPDATE ON projection_state TO {{projector_role}};

-- The reader sees the record (the log, stage logs, the projections above) and
-- nothing of the services' working state (leases, outbox, inbox, dead letters).
DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO {{reader_role}}', current_schema());
END $$;
GRANT SELECT ON events, stage_logs, projection_state TO {{reader_role}};

-- Nor anywhere else: PostgreSQL 15 and later keep `public` closed by default,
-- older ones let every role create there. Revoking needs `public`'s owner; a
-- migration that cannot says so instead of leaving the door open.
DO $$
BEGIN
  IF has_schema_privilege('{{app_role}}', 'public', 'CREATE')
     OR has_schema_privilege('{{projector_role}}', 'public', 'CREATE')
     OR has_schema_privilege('{{reader_role}}', 'public', 'CREATE') THEN
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
  END IF;
  IF has_schema_privilege('{{app_role}}', 'public', 'CREATE')
     OR has_schema_privilege('{{projector_role}}', 'public', 'CREATE')
     OR has_schema_privilege('{{reader_role}}', 'public', 'CREATE') THEN
    RAISE EXCEPTION 'the services'' roles may CREATE in schema public'
      USING HINT = 'as the owner of schema public: REVOKE CREATE ON SCHEMA public FROM PUBLIC';
  END IF;
END $$;
