"""Imported once by the extraction processes' fork server (``worker._context``).

It imports trafilatura and loads the GPT-2 tokenizer and the language model (together about a
second), and the parent's main script when it is one, so that every extraction process forked from
the server starts ready in milliseconds and recycling a process every ``extract.recycle_docs`` pages
costs next to nothing. ``gc.freeze`` keeps the collector from touching (and so copying) the
preloaded objects in every child.
"""

import gc
import multiprocessing.spawn
import os

from pipeline.extract.core import warm_up
from pipeline.extract.worker import MAIN_PATH_ENV

warm_up()
if os.environ.get(MAIN_PATH_ENV):
    multiprocessing.spawn.import_main_path(os.environ[MAIN_PATH_ENV])
gc.freeze()
