"""Sampling throughput: our KV-cached sampler, our uncached path, and transformers' ``generate``.

    python bench/sample.py [--model gpt2] [--new-tokens 256] [--prompt-tokens 16] [--repeat 2] [--device cpu]

The same random ``gpt2`` (124M) weights in both implementations (ours exported to a Hugging Face
folder with ``model/hf.py`` and loaded by ``GPT2LMHeadModel``), fp32, batch 1, greedy, exactly
``--new-tokens`` new tokens (``<|endoftext|>`` does not stop either side), on one device:

- ours, cached: ``train.sample.generate`` (one position per token through the network);
- ours, uncached: the same loop recomputing the whole sequence per token (nanoGPT's ``generate``);
- transformers: ``GPT2LMHeadModel.generate(do_sample=False)`` with its own KV cache.

Prints tokens/s for each (best of ``--repeat``), checks the three produce the same tokens, and gives
ours cached as a multiple of transformers' and of the uncached path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.gpt2 import GPT  # noqa: E402
from model.hf import export  # noqa: E402
from tests.test_model_config import model_config  # noqa: E402
from train.sample import generate  # noqa: E402


def best_rate(run: Callable[[], list[int]], tokens: int, repeat: int) -> tuple[float, list[int]]:
    best, out = 0.0, []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        best = max(best, tokens / (time.perf_counter() - start))
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    device = torch.device(args.device)
    ours = GPT(model_config(args.model)).eval().to(device)
    with tempfile.TemporaryDirectory() as folder:
        export(ours, Path(folder) / "hf")
        theirs = GPT2LMHeadModel.from_pretrained(Path(folder) / "hf", local_files_only=True).eval().to(device)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 50257, (args.prompt_tokens,), generator=g).tolist()
    n = args.new_tokens
    print(f"{args.model} ({ours.num_params():,} parameters), {device}, {torch.get_num_threads()} threads, "
          f"batch 1, greedy, fp32, prompt {len(prompt)} tokens, {n} new tokens")

    def ours_cached() -> list[int]:
        return generate(ours, prompt, n, top_k=1, stop_at_eot=False)[0]

    def ours_uncached() -> list[int]:
        return generate(ours, prompt, n, top_k=1, stop_at_eot=False, use_cache=False)[0]

    @torch.inference_mode()
    def transformers_generate() -> list[int]:
        out = theirs.generate(torch.tensor([prompt], device=device), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, pad_token_id=50256)
        return out[0, len(prompt):].tolist()

    results = {}
    for name, run in (("transformers generate (cached)", transformers_generate),
                      ("ours, KV-cached", ours_cached), ("ours, uncached", ours_uncached)):
        results[name] = best_rate(run, n, args.repeat)
        print(f"  {name:<32} {results[name][0]:8.1f} tokens/s")
    cached, uncached, hf = (results[k] for k in ("ours, KV-cached", "ours, uncached",
                                                  "transformers generate (cached)"))
    same = cached[1] == uncached[1] == hf[1]
    print(f"ours cached / transformers generate: {cached[0] / hf[0]:.2f}x; "
          f"ours cached / ours uncached: {cached[0] / uncached[0]:.2f}x; same tokens: {same}")


if __name__ == "__main__":
    main()
