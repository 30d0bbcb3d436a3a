"""The gitwatcher: records new commits of watched branches, triggers deployments (README.md)."""
