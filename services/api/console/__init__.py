"""The web console: server-rendered pages in the API service (docs/console.md says why).

- `sessions` signed session cookies naming an API key (or a person signed in by OIDC), and
  the CSRF tokens bound to them (pure)
- `keyring` which session keys sign now and which still verify: rotation (pure)
- `session_keys` the session keys every replica shares, in PostgreSQL: first writer wins
- `db_clock` the console's time, the database's (replicas' clocks may disagree), and the
  warning when this replica's is off from it
- `oidc` the OpenID Connect sign-in: discovery, PKCE, the code for tokens, the ID token
  checked against the provider's keys, groups to roles
- `oidc_web` its cookie between the redirect and the callback, its paths, the callback URL
- `oidc_sessions` people's OIDC sessions in PostgreSQL, their role re-checked with the provider
  (one request asks, holding no lock or connection meanwhile)
- `security` the console's middleware: CSRF on every post, CSP and the other headers,
  sign-in redirects and errors as pages
- `assets` the third-party front-end files, served from where `make` installed them (npm)
- `views` what each page shows, read from the views and the event log
- `live_tree` the application page's live resources: drift's newest record, nested
- `stage_graph` a deployment's stages laid out as a graph, the rollback lane below (pure)
- `charts` an analysis' recorded samples and verdicts as chart series (pure)
- `live` one server-sent event stream per page: "something changed", from the event log
- `pages` the handlers and the console's route table; actions call the API's own handlers
"""
