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

from model.base.schema import load
from train import preflight
from train.config import TrainConfig, register
from train.distributed import pick_device, setup_distributed
from train.loop import TrainingError, run
from train.preflight import PreflightError

log = logging.getLogger("webtext.train")
register()


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(raw: DictConfig) -> None:
    cfg = load(raw, TrainConfig)
    cfg.out_dir = job_out_dir(cfg.out_dir)
    try:
        preflight.verify(cfg)  # before any allocation time goes to a run that cannot work
        ranks = setup_distributed("cuda" if cfg.device in ("cuda", "auto") and _cuda() else "cpu")
        if not ranks.main:
            logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the run
        # micro_batch_size=auto: chosen for this GPU now, agreed by every rank, before any model
        device = pick_device(cfg.device, ranks.local_rank)
        cfg.micro_batch_size = preflight.resolve_micro_batch(cfg, ranks, device)
        status = run(cfg, ranks)
    except (TrainingError, PreflightError, FileNotFoundError, ValueError) as err:
        if in_sweep():
            raise  # submitit reports a job's exception to the sweep; an exit status it cannot see
        log.error("%s", err)
        status = 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if status:  # a signal's stop, checkpointed (a sweep's job: SLURM requeues or ends it; no result yet)
        sys.exit(status)


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def job_out_dir(out_dir: str) -> str:
    """In a sweep (``-m``), each job trains in ``out_dir/<job number>``: never a shared folder."""
    from hydra.core.hydra_config import HydraConfig

    return f"{out_dir}/{HydraConfig.get().job.num}" if in_sweep() else out_dir


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
