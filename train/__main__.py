"""``python -m train``: pretrain GPT-2 on llm.c token shards; rerunning the command resumes.

    python -m train model=gpt2 data.dir=/data/owt/tokens out_dir=runs/124m
    torchrun --standalone --nproc_per_node=8 -m train model=gpt2-xl data.dir=... out_dir=...
    python -m train --cfg job           # print the composed config

Parse, build, train, close: the loop is ``train/loop.py``, checkpoints ``train/checkpoint.py``.
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch.distributed as dist
from omegaconf import DictConfig

from pipeline.schema import load
from train.config import TrainConfig, register
from train.loop import TrainingError, run, setup_distributed

log = logging.getLogger("webtext.train")
register()


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(raw: DictConfig) -> None:
    cfg = load(raw, TrainConfig)
    ranks = setup_distributed("cuda" if cfg.device in ("cuda", "auto") and _cuda() else "cpu")
    if not ranks.main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the run
    try:
        status = run(cfg, ranks)
    except (TrainingError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        status = 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    sys.exit(status)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
