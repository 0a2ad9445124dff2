"""Sampling throughput: our KV-cached sampler, our uncached path, and transformers' ``generate``.

    python bench/sample.py [--model gpt2] [--new-tokens 256] [--prompt-tokens 16] [--repeat 2] [--device cpu]

The same random ``gpt2`` (124M) weights in both implementations (ours exported to a Hugging Face
folder with ``model/hf.py`` and loaded by ``GPT2LMHeadModel``), fp32, batch 1, greedy, exactly
``--new-tokens`` new tokens (``<|endoftext|>`` does not stop either side), on one device:

- ours, cached: ``model.generate.generate`` (one position per token through the network);
- ours, uncached: the same loop recomputing the whole sequence per token (nanoGPT's ``generate``);
- transformers: ``GPT2LMHeadModel.generate(do_sample=False)`` with its own KV cache.

Prints tokens/s for each (best of ``--repeat``), checks the three produce the same tokens, and gives
ours cached as a multiple of transformers' and of the uncached path. In the table of ``bench/run.py``:
ours, KV-cached, beside transformers' ``generate``, 64 new tokens a run (256 with ``--full``); issue
11's goal: >= 1.0x.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from bench.measure import Measure
from model.generate import generate
from model.gpt2 import GPT
from model.hf import export
from tests.test_model_config import model_config


def best_rate(run: Callable[[], list[int]], tokens: int, repeat: int) -> tuple[float, list[int]]:
    best, out = 0.0, []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        best = max(best, tokens / (time.perf_counter() - start))
    return best, out


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


CACHED, UNCACHED, HF = "ours, KV-cached", "ours, uncached", "transformers generate (cached)"


def samplers(args: argparse.Namespace) -> tuple[str, dict[str, Callable[[], list[int]]]]:
    """A header line, and the three samplers on the same random weights and prompt, each making
    exactly ``args.new_tokens`` tokens per call."""
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
    header = (f"{args.model} ({ours.num_params():,} parameters), {device}, {torch.get_num_threads()} "
              f"threads, batch 1, greedy, fp32, prompt {len(prompt)} tokens, {n} new tokens")

    def ours_cached() -> list[int]:
        return generate(ours, prompt, n, top_k=1, stop_at_eot=False)[0]

    def ours_uncached() -> list[int]:
        return generate(ours, prompt, n, top_k=1, stop_at_eot=False, use_cache=False)[0]

    @torch.inference_mode()
    def transformers_generate() -> list[int]:
        out = theirs.generate(torch.tensor([prompt], device=device), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, pad_token_id=50256)
        return out[0, len(prompt):].tolist()

    return header, {HF: transformers_generate, CACHED: ours_cached, UNCACHED: ours_uncached}


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    """Ours, KV-cached, beside transformers' ``generate`` on ``gpt2`` (CPU): 64 new tokens a run, or 256
    with ``full`` (issue 11's goal: >= 1.0x)."""
    args = arguments([] if full else ["--new-tokens", "64"])
    _, runs = samplers(args)
    for name in (CACHED, HF):  # first-use costs before timing
        runs[name]()

    def rate(name: str) -> Callable[[], float]:
        return lambda: best_rate(runs[name], args.new_tokens, 1)[0]

    yield [Measure(f"sample {args.model}, {CACHED}", "tokens/s", rate(CACHED), rate(HF), HF, goal=1.0,
                   issue=11)]


def main() -> None:
    args = arguments()
    header, runs = samplers(args)
    print(header)
    results = {}
    for name, run in runs.items():
        results[name] = best_rate(run, args.new_tokens, args.repeat)
        print(f"  {name:<32} {results[name][0]:8.1f} tokens/s")
    cached, uncached, hf = (results[k] for k in (CACHED, UNCACHED, HF))
    same = cached[1] == uncached[1] == hf[1]
    print(f"ours cached / transformers generate: {cached[0] / hf[0]:.2f}x; "
          f"ours cached / ours uncached: {cached[0] / uncached[0]:.2f}x; same tokens: {same}")


if __name__ == "__main__":
    main()
