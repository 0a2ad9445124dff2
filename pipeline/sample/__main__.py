"""``python -m pipeline.sample FOLDER``: write the embedded sample corpus shard into FOLDER."""

import sys
from pathlib import Path

from pipeline.sample import documents, write_corpus

if len(sys.argv) != 2:
    sys.exit("usage: python -m pipeline.sample FOLDER")
path = write_corpus(Path(sys.argv[1]))
print(f"wrote {len(documents())} sample documents to {path}")
