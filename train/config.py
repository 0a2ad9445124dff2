"""Schemas of ``python -m train``. Values live in conf/train.yaml and conf/model/.

Beside them, what reading two of their values takes: ``autocast_dtype`` (``dtype`` on a device) and
``task_manager`` (lm-evaluation-harness's index of tasks, which ``eval.tasks`` is checked against).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from model.base.schema import ConfigError, hydra_help, param
from model.config import GPTConfig

if TYPE_CHECKING:
    import torch

CONF = Path(__file__).resolve().parents[1] / "conf"
# The config groups of conf/ that python -m train reads, as --help lists them (tests/test_help.py
# checks that every group of conf/ is one app's); pipeline/config.py's GROUPS are the others.
GROUPS = ("model", "hydra/launcher")


@dataclass
class DataConfig:
    dir: str = param(MISSING, "folder of llm.c token shards: train_*.bin and val_*.bin")
    train_pattern: str = param("train_*.bin", "glob of training shards inside dir")
    val_pattern: str = param("val_*.bin", "glob of validation shards inside dir")


@dataclass
class MuonConfig:
    lr: float = param(0.02, "Muon's peak learning rate (the schedule scales it as it scales max_lr)", gt=0.0)
    momentum: float = param(0.95, "Muon's momentum (Nesterov)", ge=0.0, lt=1.0)
    weight_decay: float = param(0.0, "Muon's decoupled weight decay on the block matrices", ge=0.0)
    warmup_steps: int | None = param(None, "Muon's warmup steps; null: optim.warmup_steps", ge=0)
    ns_steps: int = param(5, "Newton-Schulz iterations that orthogonalize each update", ge=1)


@dataclass
class OptimConfig:
    name: str = param("adamw", "adamw: AdamW on everything; muon: Muon on the blocks' matrices (c_attn, "
                      "c_proj, c_fc weights), AdamW (max_lr, ...) on embeddings, biases and norms",
                      choices=("adamw", "muon"))
    max_lr: float = param(6e-4, "peak learning rate, after warmup", gt=0.0)
    min_lr_ratio: float = param(0.1, "final learning rate as a share of max_lr", ge=0.0, le=1.0)
    warmup_steps: int = param(700, "steps of linear warmup", ge=0)
    weight_decay: float = param(0.1, "AdamW weight decay on matrices (not biases or norms)", ge=0.0)
    beta1: float = param(0.9, "AdamW beta1", ge=0.0, lt=1.0)
    beta2: float = param(0.95, "AdamW beta2", ge=0.0, lt=1.0)
    grad_clip: float = param(1.0, "clip the global gradient norm to this; 0 disables", ge=0.0)
    muon: MuonConfig = param(doc="Muon's settings (optim.name=muon)", factory=MuonConfig)


@dataclass
class WandbConfig:
    enabled: bool = param(False, "log metrics to Weights & Biases")
    project: str = param("webtext", "wandb project")
    mode: str = param("offline", "wandb mode", choices=("online", "offline", "disabled"))


@dataclass
class EvalConfig:
    hellaswag: str | None = param(None, "path of the official hellaswag_val.jsonl; null skips HellaSwag")
    hellaswag_examples: int | None = param(None, "evaluate the first this many examples; null: all", ge=1)
    sample_tokens: int = param(48, "tokens per text sample at each evaluation", ge=1)
    prompts: list[str] = param(doc="fixed prompts sampled at each evaluation (greedy and sampled)",
                               factory=lambda: ["The meaning of life is", "In a shocking finding,"])
    tasks: list[str] = param(doc="lm-evaluation-harness tasks or groups run at each evaluation, on rank 0 "
                             "(the eval extra; docs/train.md); empty: none", factory=list)
    task_limit: float | None = param(None, "examples per task: a count, or a fraction when below 1; "
                                     "null: all", gt=0)
    task_batch_size: int | None = param(None, "sequences per forward pass of the tasks; null: "
                                        "micro_batch_size", ge=1)
    include_path: str | None = param(None, "a folder of more task YAML files for tasks")

    def check(self) -> None:
        if not self.tasks:
            return
        try:
            import lm_eval.tasks  # noqa: F401
        except ImportError as err:
            raise ConfigError("tasks", "lm-evaluation-harness is not installed: pip install -e '.[eval]' "
                                       "(make setup installs it)") from err
        if self.include_path is not None and not Path(self.include_path).is_dir():
            raise ConfigError("include_path", f"{self.include_path} is not a folder")
        unknown = [t for t in self.tasks if not task_manager(self.include_path).match_tasks([t])]
        if unknown:
            raise ConfigError("tasks", f"unknown to lm-evaluation-harness: {', '.join(unknown)} (python -m "
                                       "lm_eval ls tasks lists them; eval.include_path adds a folder of YAML "
                                       "files)")


@dataclass
class TrainConfig:
    model: GPTConfig = param(MISSING, "model shape (config group model/)")
    data: DataConfig = param(doc="training data", factory=DataConfig)
    optim: OptimConfig = param(doc="optimizer and learning-rate schedule", factory=OptimConfig)
    wandb: WandbConfig = param(doc="experiment tracking", factory=WandbConfig)
    eval: EvalConfig = param(doc="evaluation beside the validation loss", factory=EvalConfig)
    init_from: str = param("scratch", "scratch, or hf:DIR to start from a Hugging Face GPT-2 folder")
    out_dir: str = param("runs/default", "checkpoints, metrics and samples go here")
    seed: int = param(1337, "random seed (data order and initialisation)")
    parallel: str = param("ddp", "ddp: every rank holds the whole model, its gradients and optimizer state "
                          "(DistributedDataParallel); fsdp: FSDP2 shards all three over the ranks "
                          "(docs/training.md)", choices=("ddp", "fsdp"))
    micro_batch_size: Any = param(16, "sequences per device per forward pass (a whole number from 1), or "
                                  "auto: the largest whose memory estimate fits the GPU (train/preflight.py)")
    device_memory_gb: float | None = param(None, "GPU memory per device that micro_batch_size=auto plans "
                                           "with, in GB; null: the free memory of the GPU it sees", gt=0.0)
    total_batch_tokens: int = param(524288, "tokens per optimizer step, over all devices", ge=1)
    max_steps: int = param(19073, "optimizer steps (19,073 x 0.5M tokens = 10B tokens)", ge=1)
    eval_every_steps: int = param(250, "validate every this many steps", ge=1)
    eval_tokens: int = param(10_485_760, "validation tokens per evaluation", ge=1)
    checkpoint_every_steps: int = param(1000, "save a checkpoint every this many steps", ge=1)
    keep_last: int = param(3, "newest checkpoints kept; older ones are deleted", ge=1)
    keep_every_steps: int | None = param(None, "also keep every checkpoint whose step is a multiple of "
                                         "this, for good; null: none", ge=1)
    max_bad_steps: int = param(10, "non-finite loss or gradient steps in a row that stop the run", ge=1)
    deterministic: bool = param(False, "deterministic algorithms only (bit-exact resume on CPU)")
    log_every_steps: int = param(10, "log training metrics every this many steps", ge=1)
    device: str = param("auto", "cuda, cpu, or auto (cuda when available)")
    dtype: str = param("auto", "autocast dtype: auto is bfloat16 on GPU (float16 where a GPU has no bf16) "
                       "and float32 on CPU; bfloat16 or float16 autocast on CPU too when named; float16 "
                       "trains with a gradient scaler", choices=("auto", "float32", "bfloat16", "float16"))
    compile: bool = param(False, "torch.compile the model")
    peak_tflops: float | None = param(None, "dense peak TFLOP/s of one device for MFU; null: looked up "
                                      "from the device name (model/flops.py), none reported if unknown",
                                      gt=0.0)

    def check(self) -> None:
        mb = self.micro_batch_size
        if mb != "auto" and (isinstance(mb, bool) or not isinstance(mb, int) or mb < 1):
            raise ConfigError("micro_batch_size", f"a whole number from 1, or auto; got {mb!r}")
        if self.total_batch_tokens % self.model.block_size:
            raise ConfigError(
                "total_batch_tokens",
                f"{self.total_batch_tokens} is not a multiple of model.block_size={self.model.block_size}",
            )
        if self.init_from != "scratch" and not self.init_from.startswith("hf:"):
            raise ConfigError("init_from", f"scratch or hf:DIR, got {self.init_from!r}")
        if self.optim.warmup_steps > self.max_steps:
            raise ConfigError(
                "optim.warmup_steps", f"{self.optim.warmup_steps} exceeds max_steps={self.max_steps}"
            )
        from model.base.tokenizer import VOCAB_SIZE

        if self.eval.tasks and self.model.vocab_size < VOCAB_SIZE:
            raise ConfigError("eval.tasks", f"the tasks are GPT-2 text, which model.vocab_size="
                                            f"{self.model.vocab_size} cannot read ({VOCAB_SIZE:,} needed)")


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The forward passes' autocast dtype for ``dtype=name`` (None: float32). ``dtype=auto`` is bf16
    on a GPU and float32 on a CPU, whose matmuls are fastest in float32 unless it has bf16 units (AMX,
    AVX512-BF16): ``dtype=bfloat16`` asks for autocast there too."""
    import torch

    if name == "auto":
        name = "bfloat16" if device.type == "cuda" else "float32"
    if name == "float32":
        return None
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16  # with a GradScaler
    return getattr(torch, name)


def harness_limit(limit: float | None) -> int | float | None:
    """A ``limit`` setting as lm-evaluation-harness reads it: a count (an int) from 1 up, a fraction
    below 1, None for every example."""
    return None if limit is None else (int(limit) if limit >= 1 else limit)


@functools.cache
def task_manager(include_path: str | None) -> Any:
    """lm-evaluation-harness's ``TaskManager`` over its own tasks, the GPT-2 paper's
    (``train/paper_tasks/``, their data in ``$WEBTEXT_EVAL_DATA`` or ``data/eval``) and
    ``include_path``'s. Indexing its thousands of task files takes seconds: one is built per process
    and folder, and kept."""
    from lm_eval.tasks import TaskManager

    from train.paper import TASK_DIR

    return TaskManager(include_path=[str(TASK_DIR)] + ([include_path] if include_path else []))


def register() -> None:
    # ${python:} in conf/: this interpreter, which the sweep's SLURM jobs run too (submitit starts
    # them with it), for the launcher's setup line
    OmegaConf.register_new_resolver("python", lambda: sys.executable, replace=True)
    cs = ConfigStore.instance()
    # at the root, not in conf/'s groups, so no schema is offered as a group option
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="gpt_schema", node=GPTConfig)  # conf/model/*.yaml: /gpt_schema@model (or @_here_)
    cs.store(group="hydra/help", name="train", node=hydra_help("python -m train", CONF, GROUPS))


def compose(overrides: list[str]) -> TrainConfig:
    """The config ``python -m train overrides...`` would run with; raises if they are wrong."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from model.base.schema import from_hydra

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return from_hydra(hydra_compose(config_name="train", overrides=overrides), TrainConfig)


if __name__ == "__main__":  # python -m train.config OVERRIDES...: check them before a job is queued
    import sys

    try:
        compose(sys.argv[1:])
    except Exception as err:  # a ConfigError, or Hydra's own for an unknown key or a bad override
        sys.exit(f"config error: {err}")
