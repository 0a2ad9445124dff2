"""The shared base: what the corpus half (``pipeline/``) and the training half (``train/``, ``model/``)
both read, importing nothing else of the project.

- ``schema``: config dataclasses checked once (types, ranges, choices), Hydra and ``--key=value``;
- ``tokenizer``: the GPT-2 BPE, built offline from the files ``tiktoken`` ships;
- ``shards``: the token-shard format (llm.c's ``.bin``) that tokenize writes and training reads;
- ``files``: atomic writes of files and folders;
- ``gate``: the test gate that interruption tests hold a task, step or checkpoint at.

docs/architecture.md draws the layers; tests/test_imports.py holds them.
"""
