-- Raw-event webhooks (services/notifier/event_hooks.py, docs/events.md). Runs with
-- search_path set to the target schema; {{app_role}} is the role services log in as.
--
-- Each hook follows the log in commit order from its checkpoint (the
-- `checkpoints` row `event-hook:<name>`). One row here per document POSTed (its
-- `Slipway-Delivery` id): how many attempts it took, the last answer, and
-- whether it was delivered. The row and the checkpoint move in one transaction,
-- once every document of an event is delivered; a worker killed before that
-- sends the event again with the same delivery ids (at least once).
CREATE TABLE event_hook_deliveries (
  delivery_id      uuid        PRIMARY KEY,
  hook             text        NOT NULL,
  event_id         uuid        NOT NULL,
  global_position  bigint      NOT NULL,
  document_type    text        NOT NULL,
  attempts         integer     NOT NULL,
  status           integer     NOT NULL,  -- the last answer's HTTP status; 0: none
  delivered        boolean     NOT NULL,
  error            text        NOT NULL DEFAULT '',
  updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX event_hook_deliveries_by_hook ON event_hook_deliveries (hook, global_position);

GRANT SELECT, INSERT, UPDATE ON event_hook_deliveries TO {{app_role}};
