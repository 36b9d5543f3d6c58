"""Evaluation.

The report that compares the model with real songs and the baselines (``evaluation``), the
classifier two-sample test (``c2st``) and piano-roll pictures (``plot``).
"""
