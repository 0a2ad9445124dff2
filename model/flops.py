"""FLOPs per token and model FLOPs utilization (MFU), for the trainer's logs and bench/.

MFU = (tokens/s x FLOPs per token) / (devices x peak FLOP/s). The peak is looked up from the device
name in a table of dense (not sparse) bf16/fp16 tensor-core figures from the vendors' datasheets; a
device that is not in the table, a CPU, or float32 training gives ``None`` ("unknown") unless the
peak is set by config, never a guess: nanoGPT's hard-coded A100 peak reports 104% on an H100.
"""

from __future__ import annotations

import re

import torch

from model.config import GPTConfig

# Dense bf16 (= fp16) tensor-core peaks per device, first match wins: specific names before general
# ones ("H100 PCIe" before "H100", "L40S" before "L4"). The sparsity figures are twice these.
PEAK_BF16_FLOPS: tuple[tuple[str, float | None], ...] = (
    (r"GH200", 989e12),
    (r"H200 NVL", 835e12),
    (r"H200", 989e12),
    (r"H100 NVL", 835e12),
    (r"H100 PCIe", 756e12),
    (r"H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"B200", 2250e12),
    (r"A100", 312e12),
    (r"A10G", None),  # AWS's variant of the A10: NVIDIA publishes no figure, so none is claimed
    (r"A10\b", 125e12),
    (r"A40\b", 149.7e12),
    (r"L40S", 362e12),
    (r"L40\b", 181e12),
    (r"L4\b", 121e12),
    (r"MI300X", 1307e12),
)


def flops_per_token(cfg: GPTConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token (forward and backward): 6N + 12 * n_layer * n_embd * T.

    N counts the parameters that multiply activations: everything but the position embedding (a
    lookup), with the tied token embedding counted once, as the output layer. The second term is
    attention's QK^T and AV at context T. 0.855 GFLOP for gpt2 at T = 1024.
    """
    t = cfg.block_size if seq_len is None else seq_len
    return 6 * cfg.num_params(include_embeddings=False) + 12 * cfg.n_layer * cfg.n_embd * t


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def peak_flops(name: str, dtype: str = "bfloat16") -> float | None:
    """Dense peak FLOP/s of one device called ``name`` in ``dtype``; None when unknown."""
    if dtype not in ("bfloat16", "float16"):
        return None  # float32 runs on other units (TF32 or none): no honest single figure
    for pattern, peak in PEAK_BF16_FLOPS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return peak
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, peak_per_device: float | None,
        devices: int = 1) -> float | None:
    """Model FLOPs utilization in [0, 1] (None when the peak is unknown)."""
    if peak_per_device is None or peak_per_device <= 0:
        return None
    return tokens_per_s * flops_per_tok / (devices * peak_per_device)
