"""Training (the only part that imports torch).

The arranger network (``arranger``, ``chiptuner train``), and the melody extractor's note
networks (``melody_notes``) and line networks (``melody_line``), fitted on POP909 with the
songs and scoring they share (``melody_corpus``).
"""
