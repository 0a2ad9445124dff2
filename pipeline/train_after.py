"""``train_after``: the pipeline submits the training job itself, chained to the tokenize stage.

    python -m pipeline source.files='[...]' workdir=W stages='[links,...,tokenize]' executor=slurm \
        train_after='"model=gpt2 out_dir=runs/124m"' train_sbatch='"--nodes=2 --gpus-per-node=8"'

submits ``sbatch slurm/train.sbatch data.dir=W/tokens model=gpt2 out_dir=runs/124m`` with
``--dependency=afterok:<tokenize array job>``: SLURM starts training only once every tokenize task
succeeded, and cancels it (``--kill-on-invalid-dep``) if one fails. Under the local executor, or
when the tokens were already complete, it is submitted once the stages are done. The job id is kept
in ``W/logs/slurm/train/job_id``: a rerun of the same command does not queue a second training job
while the first is pending or running (a finished one is submitted again, and resumes from its
newest checkpoint). The job's log is ``W/logs/slurm/train/<job id>.out``.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from model.base.files import atomic_write
from pipeline.config import PipelineConfig
from pipeline.paths import StagePaths
from pipeline.runtime import StageError, require_complete

log = logging.getLogger("webtext.pipeline")

SCRIPT = Path(__file__).resolve().parents[1] / "slurm" / "train.sbatch"


def logs_dir(workdir: str | Path) -> Path:
    return Path(workdir).resolve() / "logs" / "slurm" / "train"


def check(cfg: PipelineConfig) -> None:
    """Before any work: the training job can be submitted, and will find its tokens."""
    if shutil.which("sbatch") is None:
        raise StageError("train_after submits the training job with sbatch, which is not on PATH "
                         "(this machine is not a SLURM login node)")
    if not SCRIPT.exists():
        raise StageError(f"train_after: {SCRIPT} is missing (install the project editable, from its "
                         "checkout)")
    if "tokenize" not in cfg.stages:
        tokens = StagePaths(Path(cfg.workdir), "tokenize")
        if not tokens.meta.exists() and not _overrides_data_dir(cfg):
            raise StageError(f"train_after trains on {tokens.root}, which the tokenize stage has not made: "
                             "add tokenize to stages (or set data.dir in train_after)")
        require_complete(tokens)
    check_overrides(cfg)


def check_overrides(cfg: PipelineConfig) -> None:
    """The training job's overrides make a valid config, checked now rather than when the job starts."""
    probe = subprocess.run([sys.executable, "-m", "train.config", *train_overrides(cfg)], capture_output=True,
                           text=True, timeout=300)
    if probe.returncode != 0:
        said = probe.stderr.strip().removeprefix("config error: ") or f"exit status {probe.returncode}"
        raise StageError(f"train_after is not a valid training config: {said}")


def _overrides_data_dir(cfg: PipelineConfig) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] == "data.dir" for o in shlex.split(cfg.train_after or ""))


def train_overrides(cfg: PipelineConfig) -> list[str]:
    """``python -m train``'s overrides for the job: the user's, after a default ``data.dir``."""
    overrides = shlex.split(cfg.train_after or "")
    if not _overrides_data_dir(cfg):
        overrides.insert(0, f"data.dir={StagePaths(Path(cfg.workdir).resolve(), 'tokenize').root}")
    return overrides


def command(cfg: PipelineConfig, after: str | None) -> list[str]:
    """The sbatch command line of the training job."""
    options = ["--parsable", f"--output={logs_dir(cfg.workdir)}/%j.out"]
    if after is not None:
        options += [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"]
    return ["sbatch", *options, *shlex.split(cfg.train_sbatch), str(SCRIPT), *train_overrides(cfg)]


def _queued(job: str) -> str:
    """The job's state while SLURM still has it pending or running; empty otherwise."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else ""


def submit(cfg: PipelineConfig, after: str | None) -> str:
    """Submit the training job (``afterok`` on job ``after`` when given); return its job id."""
    folder = logs_dir(cfg.workdir)
    record = folder / "job_id"
    if record.exists():
        previous = record.read_text().strip()
        state = _queued(previous)
        if state:
            log.info("train: job %s is already %s; not submitting another (log: %s/%s.out)",
                     previous, state.lower(), folder, previous)
            return previous
    folder.mkdir(parents=True, exist_ok=True)
    argv = command(cfg, after)
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)  # the job's ranks use this interpreter (the venv's)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise StageError(f"sbatch refused the training job ({shlex.join(argv)}): {done.stderr.strip()}")
    job = done.stdout.strip().split(";")[0]
    atomic_write(record, job + "\n")
    waits = f" to start after job {after} succeeds" if after else ""
    log.info("train: submitted job %s%s: %s (log: %s/%s.out)", job, waits,
             shlex.join([str(SCRIPT), *train_overrides(cfg)]), folder, job)
    return job
