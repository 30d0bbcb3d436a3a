"""The analysis service: measures ANALYSIS stages and gives their verdicts (DESIGN §2, §8)."""
