"""The executor: runs planned deployments stage by stage (DESIGN §2, §5)."""
