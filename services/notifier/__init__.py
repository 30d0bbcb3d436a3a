"""The notifier: tells people what happened, routed by the control config (README.md)."""
