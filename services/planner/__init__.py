"""The planner service: turns each deployment trigger into a plan (see README.md)."""
