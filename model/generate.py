"""Generation: the next token from logits, continuations of a prompt (KV-cached), prompts from text.

Used by the sampler (``python -m train.sample``) and by evaluation's text samples. With the cache,
each new token runs one position through the network. A sequence longer than the context
(``block_size``) continues on a sliding window of the last ``block_size`` tokens, exactly as the
uncached path does; since positions are learned and absolute, each such step recomputes the window.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from model.base.tokenizer import EOT_ID, gpt2_encoding
from model.gpt2 import GPT

log = logging.getLogger("webtext.sample")


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
