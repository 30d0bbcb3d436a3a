-- The notifier's delivery queue (services/notifier). Runs with search_path set
-- to the target schema; {{app_role}} is the role services log in as.
--
-- One row per scheduled notification, inserted by the notifier's consumer in
-- the same transaction as the notification's NotificationScheduled event and
-- the consumer's inbox record (an outbox: nothing scheduled is lost, nothing is
-- scheduled twice). The delivery worker claims due rows with FOR UPDATE SKIP
-- LOCKED, becoming their `holder` until `expires_at` with a new `token`; it
-- records each outcome (an event) in the transaction that also updates the row,
-- and only while the row is still its own with that token. A worker killed
-- mid-send leaves its rows claimed until the lease runs out (at once for the
-- same instance name restarting); then another takes them and sends again.
--
-- The events (`notification-<id>`) are the record; this table is only the
-- queue's working state and can be rebuilt from them.
CREATE TABLE notifier_outbox (
  notification_id  text        PRIMARY KEY,
  receiver         text        NOT NULL,
  attempts         integer     NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  holder           text,
  token            bigint      NOT NULL DEFAULT 0,
  expires_at       timestamptz,
  done_at          timestamptz,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- What every claim looks for: undone rows, soonest first.
CREATE INDEX notifier_outbox_due ON notifier_outbox (next_attempt_at) WHERE done_at IS NULL;

GRANT SELECT, INSERT, UPDATE ON notifier_outbox TO {{app_role}};
