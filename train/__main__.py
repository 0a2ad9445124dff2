"""``python -m train``: compose and validate the training config, check the data, then train.

    python -m train model=gpt2 data.dir=/data/owt/tokens out_dir=runs/124m
    python -m train --cfg job           # print the composed config

The training loop itself is not implemented yet (see the issue tracker); today this entry point
validates the config, reports the model size and the token shards it would train on, and exits
with status 2.
"""

from __future__ import annotations

import glob
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.schema import load
from pipeline.tokenize import read_shard
from train.config import TrainConfig, register

log = logging.getLogger("webtext.train")
register()


def count_tokens(folder: str, pattern: str) -> tuple[int, int]:
    """(shards, tokens) of the llm.c shards matching ``pattern`` in ``folder``."""
    paths = sorted(glob.glob(str(Path(folder) / pattern)))
    return len(paths), sum(len(read_shard(p)) for p in paths)


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(raw: DictConfig) -> None:
    cfg = load(raw, TrainConfig)
    log.info("model %s: %s parameters", cfg.model.name, f"{cfg.model.num_params():,}")
    for split, pattern in (("train", cfg.data.train_pattern), ("val", cfg.data.val_pattern)):
        try:
            shards, tokens = count_tokens(cfg.data.dir, pattern)
        except ValueError as err:
            sys.exit(f"data error: {err}")
        if not shards:
            sys.exit(f"data error: no {split} shards match {pattern!r} in data.dir={cfg.data.dir}")
        log.info("%s: %d shards, %s tokens", split, shards, f"{tokens:,}")
    sys.exit("the training loop is not implemented yet; config and data are valid")


if __name__ == "__main__":
    main()
