"""Pure pieces of running a deployment that more than one service may need.

- `options`: a planned stage's `options_json`, decoded into the config's options Struct;
- `variants`: the manifests of a canary/baseline variant, built from the primary's.
"""
