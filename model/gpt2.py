"""GPT-2, read top to bottom: attention, MLP, block, the model, then the KV cache it generates with.

The network is OpenAI's GPT-2 (Radford et al., 2019): pre-LayerNorm blocks, learned position
embeddings, input and output embeddings tied, the tanh form of GELU, LayerNorm eps 1e-5. Parameter
names are GPT-2's (``transformer.wte``, ``transformer.h.0.attn.c_attn``, ...), so a state dict
maps one to one onto OpenAI's checkpoints; the only difference in layout is that ``nn.Linear``
stores (out, in) where GPT-2's Conv1D stores (in, out), which ``model/hf.py`` transposes.

The token embedding has ``padded_vocab_size`` rows (50,304 for GPT-2: a multiple of 64 makes the
output matmul faster on GPUs). The padding rows are never visible outside this file: logits, the
loss and the sampler see exactly ``vocab_size`` (50,257) entries, and exports cut the rows off.

Shapes in comments: B batch, T time (tokens), C channels (n_embd), nh heads, hs head size, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import GPTConfig

PAD_MULTIPLE = 64


# The 2-D weights inside the transformer blocks, by name suffix: what Muon orthogonalizes
# (train/optim.py) and what the memory model counts at Muon's smaller state (model/memory.py).
BLOCK_MATRICES = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def padded_vocab_size(cfg: GPTConfig) -> int:
    return math.ceil(cfg.vocab_size / PAD_MULTIPLE) * PAD_MULTIPLE


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # which of the KV cache's layers holds this attention's keys and values
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.extend(self.layer, k, v)  # (B, nh, S, hs): every position so far, these T last
        S = k.size(2)
        mask = None
        if T > 1 and S > T:  # new tokens after cached ones: each sees the past and the new ones before it
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=(T > 1 and S == T),
            dropout_p=self.dropout if self.training else 0.0,
        )  # flash or memory-efficient kernels on GPU
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU(approximate="tanh")  # what GPT-2 was trained with (transformers: gelu_new)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: each sublayer reads a normalized copy and adds to the residual stream."""

    def __init__(self, cfg: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(padded_vocab_size(cfg), cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layer)),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, padded_vocab_size(cfg), bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization: N(0, 0.02) weights, zero biases, and the two projections that add
        to the residual stream scaled by 1/sqrt(2 * n_layer), so the stream's variance does not grow
        with depth. Padding rows are zero."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
        with torch.no_grad():
            self.transformer.wte.weight[self.config.vocab_size:].zero_()

    def num_params(self) -> int:
        """Parameters as OpenAI counts them: tied embeddings once, no vocabulary padding."""
        unique = {id(p): p.numel() for p in self.parameters()}
        padding = (padded_vocab_size(self.config) - self.config.vocab_size) * self.config.n_embd
        return sum(unique.values()) - padding

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                cache: KVCache | None = None, last_only: bool = False,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for token ids ``idx`` (B, T), and the mean cross-entropy on ``targets``
        (B, T; -1 is ignored) when given.

        With ``cache``, ``idx`` continues the sequence the cache holds (positions start there) and
        the cache grows by T. ``last_only`` computes logits for the last position alone (B, 1, V).
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} positions exceed the context of {self.config.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache)
        if cache is not None:
            cache.advance(T)
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:, :]
        V = self.config.vocab_size  # the padding is no token: logits (B, T, V)
        if x.is_cuda:  # the padded matmul is the fast one on GPUs
            logits = self.lm_head(x)[..., :V]
        else:  # on CPUs the slice's copies cost more than the columns: multiply by the real rows only
            logits = F.linear(x, self.lm_head.weight[:V])
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss

    def new_cache(self, batch_size: int) -> KVCache:
        p = self.transformer.wte.weight
        return KVCache(self.config, batch_size, device=p.device, dtype=p.dtype)


class KVCache:
    """Keys and values of every layer for the positions seen so far, so that generating one more
    token costs one position instead of the whole sequence. Preallocated to the context length."""

    def __init__(self, cfg: GPTConfig, batch_size: int, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        shape = (cfg.n_layer, batch_size, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions held, in every layer

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's keys and values of the new positions; return all of them so far."""
        end = self.length + k.size(2)
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.length = 0
