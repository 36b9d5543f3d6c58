"""Corpus conversion and training data.

MIDI folders to shards (``convert``, on a Dask cluster with ``cluster``), and the shards as
training songs (``dataset``).
"""
