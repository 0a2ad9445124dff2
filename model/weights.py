"""The model's own weights on disk, and finding them: what export, import and sampling read.

A model folder holds the weights in safetensors (our parameter names and layout, the padded
vocabulary, the tied matrix once) and the ``GPTConfig`` as JSON. A training checkpoint is such a
folder plus the trainer's state, in a run folder, complete once its marker exists (written last);
``model/base/folders.py`` names them all. Loading never unpickles code: safetensors and JSON.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.base.files import atomic_folder
from model.base.folders import COMPLETE, MODEL_CONFIG, WEIGHTS, CheckpointFolder, Damaged, RunFolder, readable
from model.base.schema import validate
from model.config import GPTConfig
from model.gpt2 import GPT

HF_PREFIX = "hf:"


def save(model: GPT, folder: str | Path) -> Path:
    """Write ``model`` to ``folder`` atomically: a temporary folder renamed into place."""
    with atomic_folder(folder) as tmp:
        write_files(model, tmp)
    return Path(folder)


def write_files(model: GPT, folder: Path) -> None:
    """``model.safetensors`` and ``model.json`` into ``folder`` (the caller makes it atomic)."""
    write_state(state_dict(model), model.config, folder)


def write_state(state: dict[str, torch.Tensor], cfg: GPTConfig, folder: Path) -> None:
    """``write_files`` for a state already gathered (``state_dict``'s keys, on the host): a sharded
    model's, collected whole by ``train/sharding.py``."""
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / MODEL_CONFIG).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")


def tied_once(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's state dict without ``lm_head.weight``: the tied output matrix is the token embedding."""
    return {k: v for k, v in state.items() if k != "lm_head.weight"}


def state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The parameters to store: the tied output matrix is the token embedding, stored once."""
    return {k: v.detach().cpu().contiguous() for k, v in tied_once(model.state_dict()).items()}


def read_config(folder: Path) -> GPTConfig:
    cfg = GPTConfig(**readable(folder / MODEL_CONFIG, lambda p: json.loads(p.read_text())))
    validate(cfg)
    return cfg


def assemble(cfg: GPTConfig, state: dict[str, torch.Tensor], source: Path | str) -> GPT:
    """Our model from a complete state dict in our layout (the tied matrix once), in eval mode.

    Built on the meta device, so nothing is initialized: every tensor comes from ``state``.
    """
    with torch.device("meta"):
        model = GPT(cfg)
    expected = {k: v.shape for k, v in tied_once(model.state_dict()).items()}
    if state.keys() != expected.keys():
        missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
        raise ValueError(f"{source}: the weights are not a GPT-2 of this shape; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if tensor.shape != expected[name]:
            raise ValueError(f"{source}: {name} has shape {tuple(tensor.shape)}, expected "
                             f"{tuple(expected[name])}")
    model.load_state_dict(state, strict=False, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # assign replaced wte's parameter: tie again
    return model.eval()


def load(folder: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The model in a folder written by ``save`` (or a checkpoint), on ``device``, in eval mode."""
    folder = Path(folder)
    state = readable(folder / WEIGHTS, lambda p: load_file(str(p), device=str(device)))
    return assemble(read_config(folder), state, folder / WEIGHTS)


def resolve(spec: str | Path) -> tuple[str, Path]:
    """What a ``checkpoint=`` value names: ``("ours", folder)`` or ``("hf", folder)``.

    Accepted: a model or checkpoint folder; a run folder (its newest complete checkpoint); a
    Hugging Face GPT-2 folder (``config.json`` and weights), optionally written ``hf:DIR``.
    """
    text = str(spec)
    if text.startswith(HF_PREFIX):
        return "hf", Path(text[len(HF_PREFIX):])
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {text}: no such file or folder")
    if (path / WEIGHTS).exists() and (path / MODEL_CONFIG).exists():
        return "ours", verified(CheckpointFolder(path)).path
    if RunFolder.is_run(path):
        newest = RunFolder(path).newest_checkpoint()
        if newest is None:
            raise FileNotFoundError(f"checkpoint {text}: the run folder has no complete checkpoint "
                                    f"(checkpoints/step_*/ with a {COMPLETE} marker)")
        return "ours", verified(newest, RunFolder(path)).path
    if (path / "config.json").exists():
        return "hf", path
    raise FileNotFoundError(f"checkpoint {text}: not a model folder ({WEIGHTS} + {MODEL_CONFIG}), a run "
                            "folder (checkpoints/), or a Hugging Face folder (config.json)")


def verified(folder: CheckpointFolder, run: RunFolder | None = None) -> CheckpointFolder:
    """``folder`` when it is a plain model folder or a checkpoint that verifies; else ``Damaged``
    naming each damaged file (and, in a run folder, the newest checkpoint that verifies)."""
    if not folder.is_complete():
        return folder  # a model folder (export, save): no marker to check against
    problems = folder.problems()
    if not problems:
        return folder
    message = f"checkpoint {folder.path} is damaged: {'; '.join(problems)}"
    if run is not None:
        good = next((run.checkpoint(s) for s in reversed(run.complete_steps())
                     if not run.checkpoint(s).problems()), None)
        message += f"; the newest that verifies is {good.path}" if good else "; none there verifies"
    raise Damaged(message + " (python -m train.verify lists them all)")
