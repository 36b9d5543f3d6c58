"""Training (the only part that imports torch).

The arranger network (``arranger``).
"""
