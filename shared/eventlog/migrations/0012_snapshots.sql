-- Snapshots of long streams (shared/snapshots.py): a cache of a stream's folded state
-- at a version, so that reading a long stream's state (the API's deployment and
-- application reads, "as of" reads) folds only the events after the newest snapshot
-- at or before the point asked for. Runs with search_path set to the target schema;
-- {{app_role}} is the role services log in as, {{projector_role}} the one
-- `slipway replay` logs in as (it drops and rebuilds them).
--
-- Never the truth: the events are. A row whose `code_version` is not the reader's
-- (the fold or its state type changed) is ignored, an undecodable one is ignored and
-- written again, and losing the whole table loses nothing but time.
CREATE TABLE stream_snapshots (
  stream_id        text        NOT NULL,
  kind             text        NOT NULL,   -- which fold made it ('deployment', 'application')
  stream_version   bigint      NOT NULL,   -- the state after events 0..stream_version
  code_version     text        NOT NULL,   -- the fold's revision and its state type's shape
  global_position  bigint      NOT NULL,   -- the newest position among those events
  recorded_at      timestamptz NOT NULL,   -- the latest time among those events
  state            bytea       NOT NULL,   -- the state's msgspec JSON, zlib-compressed
  written_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (stream_id, kind, stream_version)
);

-- Compressed already: stored out of line as it is, not compressed again.
ALTER TABLE stream_snapshots ALTER COLUMN state SET STORAGE EXTERNAL;

GRANT SELECT, INSERT, UPDATE ON stream_snapshots TO {{app_role}};
GRANT SELECT, INSERT, UPDATE, DELETE ON stream_snapshots TO {{projector_role}};
GRANT SELECT ON stream_snapshots TO {{reader_role}};
