-- Slack threads (services/notifier): one deployment's messages to a Slack Web API
-- receiver (`oauthToken` + `channelID`) form one thread. Runs with search_path set
-- to the target schema; {{app_role}} is the role services log in as.
--
-- `thread_key` (the deployment id, '' for notifications about no deployment or
-- to a hook URL, which cannot thread) lets the delivery worker hold a message
-- back while an earlier one of its thread is still undelivered: the first one
-- delivered starts the thread, and its `ts` (Slack's message id, answered by
-- chat.postMessage) is kept in `notifier_slack_threads`; the later ones are
-- posted with it as `thread_ts`. Like the outbox, working state: the events
-- are the record.
ALTER TABLE notifier_outbox ADD COLUMN thread_key text NOT NULL DEFAULT '';

-- What the hold-back looks for: undone rows of one receiver's thread.
CREATE INDEX notifier_outbox_thread ON notifier_outbox (receiver, thread_key, created_at)
  WHERE done_at IS NULL AND thread_key <> '';

CREATE TABLE notifier_slack_threads (
  receiver    text        NOT NULL,
  thread_key  text        NOT NULL,
  channel     text        NOT NULL,
  ts          text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (receiver, thread_key)
);

GRANT SELECT, INSERT ON notifier_slack_threads TO {{app_role}};
