"""``python -m pipeline.sample FOLDER``: write the embedded sample into FOLDER.

FOLDER/dumps/RS_sample.zst is a Pushshift-style submission dump; FOLDER/corpus/part-00000.parquet
is the sample documents as a corpus shard (what publish will write once fetch and extract exist).
"""

import sys
from pathlib import Path

from pipeline.sample import documents, write_corpus, write_dump

if len(sys.argv) != 2:
    sys.exit("usage: python -m pipeline.sample FOLDER")
folder = Path(sys.argv[1])
print(f"wrote a sample submission dump to {write_dump(folder / 'dumps')}")
print(f"wrote {len(documents())} sample documents to {write_corpus(folder / 'corpus')}")
