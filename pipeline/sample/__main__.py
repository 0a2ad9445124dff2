"""``python -m pipeline.sample FOLDER [PORT]``: write the embedded sample into FOLDER.

FOLDER/dumps/RS_sample.zst is a Pushshift-style submission dump (with PORT, its links point at the
demo server ``python -m pipeline.sample.server PORT``); FOLDER/hosts.txt holds the fetch.hosts
override that sends the sample's domains to the demo server.
"""

import sys
from pathlib import Path

from pipeline.sample import domains, write_dump

if len(sys.argv) not in (2, 3):
    sys.exit("usage: python -m pipeline.sample FOLDER [PORT]")
folder = Path(sys.argv[1])
port = int(sys.argv[2]) if len(sys.argv) == 3 else None
print(f"wrote a sample submission dump to {write_dump(folder / 'dumps', port)}")
hosts = ",".join(f"'{domain}=127.0.0.1'" for domain in domains())
(folder / "hosts.txt").write_text(f"[{hosts}]\n")
