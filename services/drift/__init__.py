"""The drift service: live-state drift detection and cascade deletion (README.md)."""
