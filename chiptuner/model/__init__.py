"""The arranger model.

Its weights and step (``arranger``), the baselines it is measured against, and the sampling
calibration fitted on validation songs (no torch needed).
"""
