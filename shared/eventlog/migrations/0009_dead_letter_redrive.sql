-- `slipway deadletters redrive` asks the consumer that dead-lettered a message
-- to handle it again: it sets `redrive_requested_at`; the consumer (which polls
-- for its own requests) runs the stored event through its normal path, inbox
-- dedupe included, and sets `redriven_at` once it is handled (or was already).
-- A real failure clears the request and keeps why in `redrive_error`. Nothing
-- is republished to NATS, so no other consumer sees the event again.
ALTER TABLE dead_letters
  ADD COLUMN redrive_requested_at timestamptz,
  ADD COLUMN redriven_at timestamptz,
  ADD COLUMN redrive_error text;
GRANT UPDATE (redrive_requested_at, redriven_at, redrive_error) ON dead_letters TO {{app_role}};
CREATE INDEX dead_letters_redrive_requested ON dead_letters (consumer, id)
  WHERE redrive_requested_at IS NOT NULL AND redriven_at IS NULL;
