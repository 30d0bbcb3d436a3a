-- The api service (services/api). Runs with search_path set to the target
-- schema; {{app_role}} is the role services log in as.
--
-- API keys live in their event streams (`apikey-<key_id>`, shared/apikeys.py):
-- checking a key reads its one stream by id, which the (stream_id,
-- stream_version) index serves. Listing every key finds the streams by prefix;
-- this small partial index keeps that from scanning the whole log.
CREATE INDEX events_apikey_streams ON events (stream_id text_pattern_ops, stream_version)
  WHERE stream_id LIKE 'apikey-%';
