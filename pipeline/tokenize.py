"""Tokenize: corpus text -> GPT-2 BPE token shards in llm.c's ``.bin`` format.

The shard format (llm.c's, ``model/base/shards.py``) is shared with training: every document is
preceded by ``<|endoftext|>`` (50256), as llm.c and modded-nanogpt write them, so shards made there
train here and vice versa.

Each document goes to train or val by a salted hash of its id, so the split does not depend on the
task count or the order of files. Tasks take contiguous slices of the input's Parquet row groups;
reading the shards task by task, in name order, gives the documents in input order.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from model.base.shards import header
from model.base.tokenizer import EOT_ID, gpt2_encoding
from pipeline.config import TokenizeConfig
from pipeline.parquet_io import open_file, read_metadata, reading
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, require_complete, writing

EOT = np.array([EOT_ID], dtype=np.uint32)


class ShardWriter:
    """Writes a series of shards ``<prefix>_NNN.bin``, each at most ``max_tokens`` tokens.

    Documents are split across shard boundaries, as llm.c does, so every shard but the last is full.
    """

    def __init__(self, ctx: TaskContext, prefix: str, max_tokens: int) -> None:
        self.ctx, self.prefix, self.max_tokens = ctx, prefix, max_tokens
        self.part = 0
        self.file: BinaryIO | None = None
        self.path = ctx.tmp
        self.in_file = 0

    def write(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self.file is None:
                self._open_file()
            assert self.file is not None
            with writing(self.path):  # (a failed write names no file)
                room = self.max_tokens - self.in_file
                head, tokens = tokens[:room], tokens[room:]
                self.file.write(head.tobytes())
                self.in_file += len(head)
                if self.in_file == self.max_tokens:
                    self._close_file()

    def _open_file(self) -> None:
        self.path = self.ctx.output(f"{self.prefix}_{self.part:03d}.bin")
        self.file = open(self.path, "wb")
        self.in_file = 0
        with writing(self.path):
            self.file.write(header(0).tobytes())

    def _close_file(self) -> None:
        assert self.file is not None
        with writing(self.path):
            self.file.seek(0)
            self.file.write(header(self.in_file).tobytes())
            self.file.close()
        self.file = None
        self.part += 1

    def close(self) -> None:
        if self.file is not None:
            self._close_file()


def in_val_split(key: str, fraction: float, salt: str) -> bool:
    """Whether the document with this key belongs to the validation split."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


class TokenizeStage(Stage):
    name = "tokenize"

    @property
    def conf(self) -> TokenizeConfig:
        return self.cfg.tokenize

    @property
    def num_tasks(self) -> int:
        return self.conf.tasks

    def stage_config(self) -> TokenizeConfig:
        return self.conf

    def warm_up(self) -> None:
        gpt2_encoding()  # 0.2 s to build from the BPE files, once per worker process

    def input_files(self) -> list[Path]:
        pattern = self.conf.input
        if not Path(pattern).is_absolute():
            pattern = str(self.workdir / pattern)
        return [Path(p) for p in sorted(glob.glob(pattern))]

    def check_inputs(self) -> None:
        files = self.input_files()
        if not files:
            raise StageError(f"tokenize: no input matches {self.conf.input!r} (under {self.workdir})")
        for folder in {f.parent for f in files}:
            if folder.parent == self.workdir:  # a stage folder of this workdir, e.g. corpus/
                require_complete(StagePaths.of_folder(self.workdir, folder.name))

    def units(self) -> list[tuple[Path, int]]:
        """Every (file, row group) of the input, in order: the units split among tasks."""
        return [(f, g) for f in self.input_files() for g in range(read_metadata(f).num_row_groups)]

    def run_task(self, ctx: TaskContext) -> None:
        units = self.units()
        mine = units[ctx.index * len(units) // ctx.tasks:(ctx.index + 1) * len(units) // ctx.tasks]
        ctx.logger.info("row groups %d of %d", len(mine), len(units))
        writers = {split: ShardWriter(ctx, f"{split}_{ctx.index:05d}", self.conf.shard_tokens)
                   for split in ("train", "val")}
        for path, group in ctx.progress(mine, len(mine), "row groups"):
            self._tokenize_row_group(ctx, path, group, writers)
        for writer in writers.values():
            writer.close()

    def _tokenize_row_group(self, ctx: TaskContext, path: Path, group: int,
                            writers: dict[str, ShardWriter]) -> None:
        conf = self.conf
        columns = [conf.text_column] + ([conf.id_column] if conf.id_column else [])
        parquet = open_file(path)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise StageError(f"{path} has no column {missing[0]!r} (columns: "
                             f"{parquet.schema_arrow.names}); set tokenize.text_column/id_column")
        with reading(path):
            table = parquet.read_row_group(group, columns=columns)
        texts = table.column(conf.text_column).to_pylist()
        keys = table.column(conf.id_column).to_pylist() if conf.id_column else texts
        encoding = gpt2_encoding()
        for start in range(0, len(texts), conf.batch_docs):
            batch = [(t, k) for t, k in zip(texts[start:start + conf.batch_docs],
                                           keys[start:start + conf.batch_docs], strict=True)]
            kept = [(t, str(k)) for t, k in batch if isinstance(t, str) and t.strip()]
            ctx.count("not_text", sum(t is not None and not isinstance(t, str) for t, _ in batch))
            ctx.count("empty_text", sum(t is None or (isinstance(t, str) and not t.strip())
                                        for t, _ in batch))
            # encode_to_numpy with no special token allowed or refused is encode_ordinary (an
            # "<|endoftext|>" in the text is plain text), without a Python list per document; the
            # batch goes to the writers as one array per split, each document after an EOT
            out: dict[str, list[np.ndarray]] = {"train": [], "val": []}
            for text, key in kept:
                split = "val" if in_val_split(key, conf.val_fraction, conf.split_salt) else "train"
                out[split] += [EOT, encoding.encode_to_numpy(text, disallowed_special=())]
            for split, parts in out.items():
                if parts:
                    tokens = np.concatenate(parts).astype(np.uint16)
                    writers[split].write(tokens)
                    ctx.add(f"{split}_docs", len(parts) // 2)
                    ctx.add(f"{split}_tokens", len(tokens))
            ctx.count("kept", len(kept))
            ctx.add("text_bytes", sum(len(text.encode()) for text, _ in kept))
