"""Evaluation: FID and GenEval scoring, and the shapes benchmark of the demo model."""
