"""The extract stage: WARC responses -> documents (main text, metadata, filters)."""
