-- Projections (read models) and where each has got to in the log (DESIGN §3).
-- Runs with search_path set to the target schema; {{app_role}} is the role
-- services log in as.
--
-- A projection's rows live in generation tables `<table>_g<N>` behind a view
-- `<table>` that readers query. `slipway replay` builds generation N + 1 from
-- position 0 next to the live one and repoints the views in one transaction,
-- so readers never see a half-built read model. See shared/projections/.

CREATE TABLE projection_state (
  name        text    PRIMARY KEY,
  -- The projection code's version that built the live generation: a runner of
  -- a newer version rebuilds before applying anything, an older one refuses.
  version     integer NOT NULL CHECK (version >= 1),
  generation  integer NOT NULL CHECK (generation >= 1),
  -- The live generation's logical tables (= view names), as that version
  -- declared them: a swap drops exactly these, even if the new version has others.
  tables      text[]  NOT NULL,
  -- The checkpoint: the last event applied, in commit-safe order. It is written
  -- in the same transaction as the rows that event produced.
  tx_id       xid8    NOT NULL DEFAULT '0',
  position    bigint  NOT NULL DEFAULT 0,
  rebuilt_at  timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

GRANT SELECT, INSERT, UPDATE ON projection_state TO {{app_role}};

-- Generation tables and their views are created, swapped and dropped at run
-- time by the application role (the live runner installs a projection, a
-- replay builds the next generation), so that role needs CREATE here. It owns
-- only what it creates: the events table stays the migration owner's, still
-- append-only by grant and by trigger.
DO $$
BEGIN
  EXECUTE format('GRANT CREATE ON SCHEMA %I TO {{app_role}}', current_schema());
END $$;
