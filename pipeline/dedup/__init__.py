"""Exact and MinHash near-duplicate removal over the extracted documents (``docs/`` -> ``dedup/``)."""
