-- The analysis service's working state (services/analysis). Runs with search_path
-- set to the target schema; {{app_role}} is the role services log in as.

-- One row per requested analysis, written by the service's consumer in the same
-- transaction as the inbox record of the AnalysisRequested, so none is lost.
-- The row is the analysis' lease: `holder` runs it until `expires_at`, renewing
-- as it goes; `token` (the fencing token) grows by one each time the lease
-- changes hands, and every append a holder makes checks in its own transaction
-- that the lease is still its own with that token (holding a share lock on the
-- row until commit), so a replica that stalled past its lease cannot write
-- after another took over. `concluded_at`/`verdict` are set in the transaction
-- that appends the AnalysisConcluded; `started_at` (the first AnalysisStarted)
-- and the verdict let PREVIOUS find an application's last successful analysis.
CREATE TABLE analysis_leases (
  analysis_id     text        PRIMARY KEY,
  deployment_id   text        NOT NULL,
  application_id  text        NOT NULL,
  stage_id        text        NOT NULL,
  holder          text,
  token           bigint      NOT NULL DEFAULT 0,
  expires_at      timestamptz,
  started_at      timestamptz,
  verdict         text,
  concluded_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- What a replica looks for on every claim: open analyses, oldest first.
CREATE INDEX analysis_leases_open ON analysis_leases (created_at) WHERE concluded_at IS NULL;
-- PREVIOUS: the application's latest successful analysis.
CREATE INDEX analysis_leases_by_app ON analysis_leases (application_id, concluded_at)
  WHERE verdict = 'success';

GRANT SELECT, INSERT, UPDATE ON analysis_leases TO {{app_role}};
