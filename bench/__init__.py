"""Benchmarks: each script runs on its own (``python bench/extract.py``) and feeds the one table of
``python bench/run.py`` (``make bench``) through its ``measures(full)``; see bench/measure.py."""
