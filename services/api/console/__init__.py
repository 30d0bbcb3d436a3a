"""The web console: server-rendered pages in the API service (docs/console.md says why).

- `sessions` signed session cookies naming an API key, and the CSRF tokens bound to them (pure)
- `security` the console's middleware: CSRF on every post, CSP and the other headers,
  sign-in redirects and errors as pages
- `assets` the third-party front-end files, served from where `make` installed them (npm)
- `views` what each page shows, read from the views and the event log
- `stage_graph` a deployment's stages laid out as a graph, the rollback lane below (pure)
- `charts` an analysis' recorded samples and verdicts as chart series (pure)
- `live` one server-sent event stream per page: "something changed", from the event log
- `pages` the handlers and the console's route table; actions call the API's own handlers
"""
