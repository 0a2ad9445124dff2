"""``python -m train.sample``: text from a trained model, KV-cached.

    python -m train.sample checkpoint=runs/124m prompt="The meaning of life"
    python -m train.sample checkpoint=hf/124m prompt="Hello, world" top_k=1 max_new_tokens=20
    python -m train.sample --help

``checkpoint`` is a run folder (its newest complete checkpoint), one checkpoint or model folder,
or a Hugging Face GPT-2 folder (``hf:DIR`` to say so). Each sample ends at ``<|endoftext|>`` or
after ``max_new_tokens``. Greedy when ``top_k=1`` or ``temperature=0``.

Generation itself (the cache, the sliding window, top-k and top-p) is ``model/generate.py``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import torch
from omegaconf import MISSING

from model.base.schema import ConfigError, cli_config, param
from model.base.tokenizer import gpt2_encoding
from model.generate import encode_prompt, generate

log = logging.getLogger("webtext.sample")


@dataclass
class SampleConfig:
    checkpoint: str = param(MISSING, "run folder, checkpoint or model folder, or hf:DIR")
    prompt: str = param("", "text to continue; empty starts a document (<|endoftext|>)")
    max_new_tokens: int = param(256, "tokens to generate per sample, at most", ge=1)
    temperature: float = param(1.0, "softmax temperature; 0 is greedy", ge=0.0)
    top_k: int | None = param(None, "sample among the k likeliest tokens; 1 is greedy; null: all", ge=1)
    top_p: float = param(1.0, "sample among the likeliest tokens holding this much probability",
                         gt=0.0, le=1.0)
    num_samples: int = param(1, "samples to draw (one batch)", ge=1)
    seed: int = param(1337, "random seed of the sampler")
    device: str = param("auto", "cuda, cpu, or auto (cuda when available)")
    dtype: str = param("auto", "weights dtype: auto is bfloat16 on GPU, float32 on CPU",
                       choices=("auto", "float32", "bfloat16", "float16"))
    cache: bool = param(True, "use the KV cache (false: recompute the whole window per token)")


def main(argv: list[str]) -> int:
    from model.hf import load_any
    from train.distributed import pick_device

    cfg = cli_config(argv, SampleConfig, "python -m train.sample")
    try:
        device = pick_device(cfg.device)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    try:
        model = load_any(cfg.checkpoint, device=device)
    except (FileNotFoundError, ValueError) as err:
        print(f"checkpoint error: {err}", file=sys.stderr)
        return 2
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
    model = model.to(getattr(torch, dtype))
    prompt = encode_prompt(cfg.prompt, model.config.block_size)
    samples = generate(model, prompt, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                       top_p=cfg.top_p, num_samples=cfg.num_samples, seed=cfg.seed, use_cache=cfg.cache)
    enc = gpt2_encoding()
    for i, sample in enumerate(samples):
        if i:
            print("\n" + "-" * 80)
        print(cfg.prompt + enc.decode(sample))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
