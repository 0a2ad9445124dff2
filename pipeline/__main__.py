"""``python -m pipeline``: compose the config, validate it, run the requested stages.

    python -m pipeline stages='[tokenize]' workdir=/data/owt executor=slurm
    python -m pipeline --cfg job        # print the composed config
    python -m pipeline --help           # config groups and values
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from pipeline.config import PipelineConfig, register
from pipeline.executor import make_executor
from pipeline.registry import STAGES
from pipeline.runtime import StageError
from pipeline.schema import ConfigError, from_hydra

log = logging.getLogger("webtext.pipeline")
register()


@hydra.main(version_base=None, config_path="../conf", config_name="pipeline")
def main(raw: DictConfig) -> None:
    try:
        cfg = from_hydra(raw, PipelineConfig)
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    logging.getLogger().setLevel(cfg.log_level)
    if cfg.executor.name == "local" and getattr(cfg.executor, "start_method", "") == "fork":
        log.warning("executor.start_method=fork: unsafe once threads run; prefer spawn")
    stages = [STAGES[name](cfg) for name in cfg.stages]
    log.info("workdir %s; stages %s; executor %s", stages[0].workdir, cfg.stages, cfg.executor.name)
    try:
        make_executor(cfg.executor).run(stages)
    except StageError as err:
        sys.exit(f"pipeline stopped: {err}")


if __name__ == "__main__":
    main()
