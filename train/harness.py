"""Our GPT-2 as an lm-evaluation-harness model: ``lm_eval.simple_evaluate(model="webtext", ...)``.

Importing this module registers the model under the name ``webtext``; its one required argument,
``checkpoint``, names what ``model.hf.load_any`` loads: a run folder (its latest checkpoint), a
checkpoint folder, or ``hf:DIR``, a Hugging Face GPT-2 folder (OpenAI's released weights among
them), so every model is scored by the same code::

    import lm_eval, train.harness
    lm_eval.simple_evaluate(model="webtext", model_args="checkpoint=out/run", tasks=["lambada_openai"])

The harness decides what is asked (its tasks, prompts, metrics); this class answers its three kinds
of request the way the harness's own ``hf`` model does, so the numbers are the same for the same
weights (``tests/test_harness.py`` proves it on an exported folder):

* ``loglikelihood``: the harness's ``TemplateLM`` encodes each (context, continuation) pair;
  ``_loglikelihood_tokens`` scores the continuation's tokens, longest requests first, in batches
  padded on the right (a causal model never reads the padding after a row's own tokens).
* ``loglikelihood_rolling``: a document's perplexity over the harness's own rolling windows
  (``get_rolling_token_windows``: each window of ``block_size`` tokens conditioned on what precedes
  it, the first on ``<|endoftext|>``).
* ``generate_until``: greedy decoding with the KV cache, stopped at the request's stop strings or
  ``<|endoftext|>``, the context cut from the left to leave room for ``max_gen_toks``.

On a GPU the forward passes run under bf16 autocast (``dtype=bfloat16``, the default there); on the
CPU in float32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval import utils as harness_utils
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from model.base.tokenizer import EOT_ID, EOT_TOKEN, gpt2_encoding
from model.gpt2 import GPT
from model.hf import load_any
from train.config import autocast_dtype
from train.distributed import pick_device

log = logging.getLogger("webtext.harness")

PAD_ID = 0  # right padding: positions after a row's own tokens, which the causal model never reads
DTYPES = ("auto", "float32", "bfloat16", "float16")

# (the request as the harness gave it, context tokens, continuation tokens)
TokenRequest = tuple[Any, list[int], list[int]]


@register_model("webtext")
class WebtextLM(TemplateLM):
    """``checkpoint``: run folder, checkpoint folder or ``hf:DIR``; ``batch_size``: sequences per
    forward pass; ``device``: ``auto`` (the GPU if there is one), ``cpu``, ``cuda``, ``cuda:1``...;
    ``dtype``: ``auto`` (bfloat16 autocast on a GPU, float32 on the CPU), ``float32``,
    ``bfloat16`` or ``float16``; ``max_gen_toks``: the generation length when a task sets none."""

    def __init__(self, checkpoint: str | None = None, batch_size: int | str = 16, device: str = "auto",
                 dtype: str = "auto", max_gen_toks: int = 256, model: GPT | None = None,
                 **_: Any) -> None:
        super().__init__()
        if batch_size == "auto" or str(batch_size).startswith("auto"):
            raise ValueError("webtext: batch_size=auto is not supported; give a number (16 fits "
                             "GPT-2 1.5B's 1,024 positions on a 24 GB GPU)")
        if (checkpoint is None) == (model is None):
            raise ValueError("webtext: give checkpoint=PATH (or a model object, from Python)")
        if model is not None:  # a model in memory (the trainer's): scored where it lives
            self.device_ = next(model.parameters()).device
            self.model: GPT = model
        else:
            self.device_ = pick_device(device)
            self.model = load_any(checkpoint, device=self.device_)
            self.model.eval()
        if dtype not in DTYPES:
            raise ValueError(f"webtext: dtype={dtype!r}; one of {', '.join(DTYPES)}")
        self.autocast_dtype = autocast_dtype(dtype, self.device_)  # the trainer's rule: None is float32
        self.batch_size_ = int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self.encoding = gpt2_encoding()
        self.checkpoint = checkpoint or "(in memory)"

    # --- what the harness asks of a model -----------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return EOT_ID

    @property
    def max_length(self) -> int:
        return self.model.config.block_size

    @property
    def batch_size(self) -> int:
        return self.batch_size_

    @property
    def device(self) -> torch.device:
        return self.device_

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **_: Any) -> list[int]:
        # "<|endoftext|>" in the text is the special token, as GPT-2's Hugging Face tokenizer reads it
        return self.encoding.encode(string, allowed_special={EOT_TOKEN})

    def tok_decode(self, tokens: Sequence[int] | int, **_: Any) -> str:
        return self.encoding.decode([tokens] if isinstance(tokens, int) else list(tokens))

    # --- scoring ------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def _logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits (B, T, V) of the next token at each position of ``rows``, padded on the right to
        the longest (log-softmax is taken later, on the positions scored only)."""
        width = max(map(len, rows))
        batch = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        with self._autocast():
            logits, _ = self.model(batch.to(self.device_))
        return logits

    def _loglikelihood_tokens(self, requests: list[TokenRequest], disable_tqdm: bool = False,
                              override_bs: int | None = None, **_: Any) -> list[tuple[float, bool]]:
        """(sum of the continuation's log-probabilities, whether greedy decoding gives it) per
        request. A row is the context and continuation, the last ``block_size`` + 1 tokens of them
        without the very last (nothing predicts past it)."""
        order = sorted(range(len(requests)), key=lambda i: (-len(requests[i][1]) - len(requests[i][2]),
                                                            tuple(requests[i][1] + requests[i][2])))
        size = override_bs or self.batch_size_
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm or len(requests) < size,
                   desc="webtext: loglikelihood")
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            rows = [(requests[i][1] + requests[i][2])[-(self.max_length + 1):][:-1] for i in chunk]
            logits = self._logits(rows)
            for b, i in enumerate(chunk):
                continuation = requests[i][2]
                n, end = len(continuation), len(rows[b])
                # (n, V): the positions that predict the continuation, in float32
                scores = F.log_softmax(logits[b, end - n:end].float(), dim=-1)
                wanted = torch.tensor(continuation, dtype=torch.long, device=scores.device)
                greedy = bool((scores.argmax(dim=-1) == wanted).all())
                total = float(scores.gather(-1, wanted[:, None]).sum())
                results[i] = (total, greedy)
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], (total, greedy))
            bar.update(len(chunk))
        bar.close()
        return [r for r in results if r is not None]

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        windows: list[TokenRequest] = []
        owner: list[int] = []
        for index, (text,) in enumerate(req.args for req in requests):
            for context, continuation in map(harness_utils.make_disjoint_window,
                                             harness_utils.get_rolling_token_windows(
                                                 token_list=self.tok_encode(text),
                                                 prefix_token=self.prefix_token_id,
                                                 max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, continuation))
                owner.append(index)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for index, (score, _) in zip(owner, scores, strict=True):
            totals[index] += score
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # --- generation ---------------------------------------------------------------------------------

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        eos = self.tok_decode(EOT_ID)
        out: list[str] = []
        for req in tqdm(requests, disable=disable_tqdm, desc="webtext: generate_until"):
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            if kwargs.get("do_sample") or kwargs.get("temperature", 0.0) > 0:
                raise ValueError("webtext: generate_until decodes greedily; this task asks for "
                                 f"sampling ({gen_kwargs})")
            max_new = int(kwargs["max_gen_toks"])
            room = self.max_length - max_new
            if room <= 0:
                raise ValueError(f"webtext: max_gen_toks={max_new} leaves no room for a context in "
                                 f"{self.max_length} positions")
            prompt = self.tok_encode(context)[-room:] or [EOT_ID]
            text = self.tok_decode(list(self._greedy(prompt, max_new, until)))
            text = postprocess_generated_text(generation=text, stop=until, think_end_token=None)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            out.append(text)
        return out

    @torch.inference_mode()
    def _greedy(self, prompt: list[int], max_new: int, until: list[str]) -> Iterator[int]:
        """Greedy continuation of ``prompt`` with the KV cache, up to ``max_new`` tokens, ending at
        ``<|endoftext|>`` (not yielded) or once a stop string appears in the decoded text."""
        cache = self.model.new_cache(1)
        feed = torch.tensor([prompt], dtype=torch.long, device=self.device_)
        made: list[int] = []
        for _ in range(max_new):
            with self._autocast():
                logits, _ = self.model(feed, cache=cache, last_only=True)
            token = int(logits[0, -1].float().argmax())
            if token == EOT_ID:
                return
            made.append(token)
            yield token
            tail = self.tok_decode(made[-32:])  # a stop string ends within the last few tokens
            if any(stop and stop in tail for stop in until):
                return
            feed = torch.tensor([[token]], dtype=torch.long, device=self.device_)
