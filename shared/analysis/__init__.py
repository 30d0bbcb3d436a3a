"""Automated analysis: judges (pure verdict logic) and the analysis service's building blocks."""
