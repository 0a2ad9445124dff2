"""``python -m pipeline``: compose the config, validate it, run the requested stages.

    python -m pipeline stages='[tokenize]' workdir=/data/owt executor=slurm
    python -m pipeline --cfg job        # print the composed config
    python -m pipeline --help           # config groups and values
"""

from __future__ import annotations

import functools
import logging
import re
import sys

import hydra
from omegaconf import DictConfig

from model.base.schema import ConfigError, load
from pipeline import train_after
from pipeline.config import PipelineConfig, register
from pipeline.executor import make_executor
from pipeline.registry import build
from pipeline.runtime import StageError

log = logging.getLogger("webtext.pipeline")
register()


@hydra.main(version_base=None, config_path="../conf", config_name="pipeline")
def main(raw: DictConfig) -> None:
    cfg = load(raw, PipelineConfig)
    logging.getLogger().setLevel(cfg.log_level)
    stages = build(cfg.stages, cfg)
    log.info("workdir %s; stages %s; executor %s", stages[0].workdir, cfg.stages, cfg.executor.name)
    then = functools.partial(train_after.submit, cfg) if cfg.train_after else None
    try:
        if then is not None:
            train_after.check(cfg)
        make_executor(cfg.executor).run(stages, then)
    except StageError as err:
        sys.exit(f"pipeline stopped: {err}")
    except ConfigError as err:  # a value only checked once the run reaches it
        sys.exit(f"config error: {err}")
    except KeyboardInterrupt:
        log.error("interrupted: finished tasks are kept; rerun the same command to resume")
        sys.exit(130)


_SETS = re.compile(r"^(\+{0,2}overlap\.sets)=\[(.*)\]$", re.S)


def quote_sets(argv: list[str]) -> list[str]:
    """``overlap.sets=[NAME=PATH,...]`` as the issue and the docs write it: Hydra's grammar takes no
    bare ``=`` inside a list, so each entry is quoted for it (entries already quoted are left)."""
    out = []
    for arg in argv:
        match = _SETS.match(arg)
        if match and "=" in match.group(2) and not re.search(r"[\"']", match.group(2)):
            items = [item.strip() for item in match.group(2).split(",") if item.strip()]
            quoted = ",".join('"' + item.replace("\\", "\\\\") + '"' for item in items)
            arg = f"{match.group(1)}=[{quoted}]"
        out.append(arg)
    return out


if __name__ == "__main__":
    sys.argv = quote_sets(sys.argv)
    main()
