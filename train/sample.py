"""``python -m train.sample``: text from a trained model, KV-cached.

    python -m train.sample checkpoint=runs/124m prompt="The meaning of life"
    python -m train.sample checkpoint=hf/124m prompt="Hello, world" top_k=1 max_new_tokens=20
    python -m train.sample --help

``checkpoint`` is a run folder (its newest complete checkpoint), one checkpoint or model folder,
or a Hugging Face GPT-2 folder (``hf:DIR`` to say so). Each sample ends at ``<|endoftext|>`` or
after ``max_new_tokens``. Greedy when ``top_k=1`` or ``temperature=0``.

With the cache, each new token runs one position through the network. A sequence longer than the
context (``block_size``) continues on a sliding window of the last ``block_size`` tokens, exactly as
the uncached path does; since positions are learned and absolute, each such step recomputes the window.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import MISSING

from model.base.schema import ConfigError, cli_config, param
from model.base.tokenizer import EOT_ID, gpt2_encoding
from model.gpt2 import GPT

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


def pick(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token (B,) from the last position's logits (B, V)."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the likelier tokens: the likeliest always stays
        ordered = ordered.masked_fill(before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(model: GPT, prompt: list[int], max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float = 1.0, num_samples: int = 1, seed: int = 1337,
             use_cache: bool = True, stop_at_eot: bool = True) -> list[list[int]]:
    """``num_samples`` continuations of the token ids ``prompt``, each without its ``<|endoftext|>``.

    ``prompt`` must be non-empty and fit in the context; ``encode_prompt`` prepares text.
    """
    block = model.config.block_size
    if not 0 < len(prompt) <= block:
        raise ValueError(f"a prompt has 1 to {block} tokens, got {len(prompt)}")
    device = model.transformer.wte.weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = torch.tensor([prompt] * num_samples, dtype=torch.long, device=device)  # (B, T)
    cache = model.new_cache(num_samples) if use_cache else None
    done = torch.zeros(num_samples, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        if cache is None or cache.length == 0 or cache.length == block:
            if cache is not None:
                cache.reset()  # (a full window: positions shift, so the window is run again)
            feed = tokens[:, -block:]
        else:
            feed = tokens[:, -1:]  # one new position; the cache holds the rest
        logits, _ = model(feed, cache=cache, last_only=True)
        token = pick(logits[:, -1, :], temperature, top_k, top_p, generator)
        token = token.masked_fill(done, EOT_ID)  # a finished sample only pads
        tokens = torch.cat([tokens, token[:, None]], dim=1)
        done |= token == EOT_ID
        if stop_at_eot and bool(done.all()):
            break
    samples = []
    for row in tokens[:, len(prompt):].tolist():
        samples.append(row[: row.index(EOT_ID)] if stop_at_eot and EOT_ID in row else row)
    return samples


def encode_prompt(text: str, block_size: int) -> list[int]:
    """Token ids of ``text`` (``<|endoftext|>`` for an empty one), cut from the left to fit."""
    ids = gpt2_encoding().encode(text, allowed_special={"<|endoftext|>"}) if text else [EOT_ID]
    if len(ids) > block_size:
        log.warning("the prompt has %d tokens, more than the context of %d: its first %d are cut",
                    len(ids), block_size, len(ids) - block_size)
        ids = ids[-block_size:]
    return ids


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
