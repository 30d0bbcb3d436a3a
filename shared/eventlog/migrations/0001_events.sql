-- The append-only event log (DESIGN §3). Runs with search_path set to the
-- target schema; {{app_role}} is the role services log in as.

CREATE TABLE events (
  global_position bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tx_id           xid8     NOT NULL DEFAULT pg_current_xact_id(),
  stream_id       text     NOT NULL,
  stream_version  bigint   NOT NULL CHECK (stream_version >= 0),
  event_id        uuid     NOT NULL,
  event_type      text     NOT NULL,
  schema_version  smallint NOT NULL DEFAULT 1,
  payload         bytea    NOT NULL,
  metadata        jsonb    NOT NULL DEFAULT '{}',
  recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT events_event_id_unique UNIQUE (event_id),
  CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

-- Readers of the whole log go in commit-safe order: (tx_id, global_position),
-- below the snapshot horizon. See shared/eventlog/store.py.
CREATE INDEX events_commit_order ON events (tx_id, global_position);
-- recorded_at grows with the log, so a BRIN index serves "as of a time" reads
-- at a fraction of a B-tree's cost on every append.
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);

-- Append-only even for the owner: the grants below keep the application role
-- out, and this keeps a mistaken migration or a psql session out too.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- Where each reader of the log (the relay, each projection) has got to.
CREATE TABLE checkpoints (
  name        text PRIMARY KEY,
  tx_id       xid8   NOT NULL,
  position    bigint NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Messages a consumer has handled, written in the same transaction as the
-- handler's effects, so a redelivery is recognised and skipped.
CREATE TABLE consumer_inbox (
  consumer     text NOT NULL,
  event_id     uuid NOT NULL,
  handled_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (consumer, event_id)
);

-- Messages a consumer gave up on, kept whole so that nothing is lost.
CREATE TABLE dead_letters (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  consumer      text   NOT NULL,
  subject       text   NOT NULL,
  stream_seq    bigint,
  deliveries    integer NOT NULL,
  headers       jsonb  NOT NULL DEFAULT '{}',
  data          bytea  NOT NULL,
  error         text   NOT NULL,
  recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (consumer, subject, stream_seq)
);

DO $$
BEGIN
  CREATE ROLE {{app_role}} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO {{app_role}}', current_schema());
END $$;
GRANT SELECT, INSERT ON events TO {{app_role}};
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM {{app_role}};
GRANT SELECT, INSERT, UPDATE ON checkpoints TO {{app_role}};
GRANT SELECT, INSERT, DELETE ON consumer_inbox TO {{app_role}};
GRANT SELECT, INSERT ON dead_letters TO {{app_role}};
