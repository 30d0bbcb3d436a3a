-- The planner's working state (services/planner): which deployment of each
-- application is active, which wait behind it, and what is running. Runs with
-- search_path set to the target schema; {{app_role}} is the role services log in as.
--
-- Everything here follows from the log (DeploymentTriggered / Planned /
-- PlanFailed / Completed events) and is written in the same transaction as the
-- planner's own appends, so it never disagrees with them. It is a table rather
-- than a fold over the log because "the oldest waiting deployment of this
-- application" must be answered under a lock, at every trigger.

CREATE TABLE planner_deployments (
  deployment_id   text        PRIMARY KEY,
  application_id  text        NOT NULL,
  -- FIFO order of arrival: the first delivery of the trigger takes a number.
  seq             bigint      GENERATED ALWAYS AS IDENTITY,
  -- waiting: not planned yet (queued, or its planning is being retried);
  -- active:  planned, not completed; done: completed, or its plan failed.
  state           text        NOT NULL CHECK (state IN ('waiting', 'active', 'done')),
  commit_hash     text        NOT NULL,
  -- When the planner first tried to plan it: how long a retried plan may take
  -- (a git outage) is measured from here, not from when it started waiting.
  planning_since  timestamptz,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One active deployment per application (DESIGN §5), enforced, not just intended.
CREATE UNIQUE INDEX planner_deployments_one_active
  ON planner_deployments (application_id) WHERE state = 'active';
CREATE INDEX planner_deployments_waiting
  ON planner_deployments (application_id, seq) WHERE state = 'waiting';

-- The running commit of each application: that of its last successful deployment.
CREATE TABLE planner_applications (
  application_id  text        PRIMARY KEY,
  running_commit  text        NOT NULL,
  deployment_id   text        NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

GRANT SELECT, INSERT, UPDATE ON planner_deployments TO {{app_role}};
GRANT SELECT, INSERT, UPDATE ON planner_applications TO {{app_role}};
