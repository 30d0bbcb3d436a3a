-- The executor's working state (services/executor). Runs with search_path set
-- to the target schema; {{app_role}} is the role services log in as.

-- One row per planned deployment the executor has to run, written by its
-- consumer in the same transaction as the inbox record of the DeploymentPlanned,
-- so none is lost; `completed_at` is set in the transaction that appends the
-- deployment's DeploymentCompleted.
--
-- The row is also the deployment's lease: `holder` runs it until `expires_at`,
-- renewing as it goes. `token` (the fencing token) grows by one each time the
-- lease changes hands; every append a holder makes checks, in its own
-- transaction, that the lease is still its own with that token (and locks the
-- row against a takeover until it commits). A holder that stalled past its
-- lease — a long GC pause, a partition — therefore cannot write after another
-- replica took over, even though it still believes it holds the lease.
CREATE TABLE executor_leases (
  deployment_id   text        PRIMARY KEY,
  application_id  text        NOT NULL,
  holder          text,
  token           bigint      NOT NULL DEFAULT 0,
  expires_at      timestamptz,
  completed_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- What a replica looks for on every claim: runnable deployments, oldest first.
CREATE INDEX executor_leases_open ON executor_leases (created_at) WHERE completed_at IS NULL;

-- Stage logs (DESIGN §3): too chatty for domain events, append-only like them.
CREATE TABLE stage_logs (
  id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  deployment_id  text        NOT NULL,
  stage_id       text        NOT NULL,
  severity       text        NOT NULL CHECK (severity IN ('info', 'success', 'error')),
  message        text        NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX stage_logs_by_stage ON stage_logs (deployment_id, stage_id, id);

CREATE FUNCTION stage_logs_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'stage logs are append-only: % on stage_logs is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER stage_logs_no_update_or_delete BEFORE UPDATE OR DELETE ON stage_logs
  FOR EACH ROW EXECUTE FUNCTION stage_logs_are_append_only();

GRANT SELECT, INSERT, UPDATE ON executor_leases TO {{app_role}};
GRANT SELECT, INSERT ON stage_logs TO {{app_role}};
