"""Pure pieces of running a deployment that more than one service may need.

- `options`: a planned stage's `options_json`, decoded into the config's options Struct
  (the executor, analysis, the planner's preview and the deployment fold all read it).

The canary/baseline variants' manifests, used by the executor alone, live in
`services/executor/variants.py`.
"""
