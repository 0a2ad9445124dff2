"""``python -m model.export checkpoint=RUN_OR_CHECKPOINT out=DIR``: a Hugging Face GPT-2 folder.

``checkpoint`` is a run folder (its newest complete checkpoint), a checkpoint or model folder
(``model.safetensors`` + ``model.json``), or a Hugging Face folder. The result loads with
``transformers.GPT2LMHeadModel.from_pretrained(DIR, local_files_only=True)`` and generates with
``transformers.pipeline("text-generation", model=DIR)``, offline (``model/hf.py``). A damaged
checkpoint is refused with the damaged file named (``python -m train.verify`` lists a run's).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from omegaconf import MISSING

from model.base.schema import cli_config, param


@dataclass
class ExportConfig:
    checkpoint: str = param(MISSING, "run folder, checkpoint or model folder, or hf:DIR")
    out: str = param(MISSING, "folder to write (replaced if it exists)")


def main(argv: list[str]) -> int:
    from model.hf import export, load_hf
    from model.weights import load, resolve

    cfg = cli_config(argv, ExportConfig, "python -m model.export")
    try:
        kind, source = resolve(cfg.checkpoint)  # a checkpoint is verified here, once
        model = load_hf(source) if kind == "hf" else load(source)
    except (FileNotFoundError, ValueError) as err:
        print(f"checkpoint error: {err}", file=sys.stderr)
        return 2
    out = export(model, cfg.out)
    print(f"exported {source} ({model.config.name}, {model.num_params():,} parameters) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
