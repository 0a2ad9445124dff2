"""FLOPs per token and MFU: the formula, the peak table, and "unknown" rather than a guess."""

from __future__ import annotations

import pytest

from model.flops import flops_per_token, mfu, peak_flops
from tests.test_model_config import model_config


def test_flops_per_token_of_gpt2():
    cfg = model_config("gpt2")
    # 6 x 123,653,376 (no position embedding; tied head once) + 12 x 12 x 768 x 1024
    assert flops_per_token(cfg) == 6 * 123_653_376 + 12 * 12 * 768 * 1024 == 855_166_464
    assert flops_per_token(cfg, seq_len=2048) == 855_166_464 + 12 * 12 * 768 * 1024


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA GH200 480GB", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA A10", 125e12),
    ("NVIDIA A10G", None),
    ("NVIDIA L4", 121e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA GeForce RTX 3090", None),
    ("Tesla V100-SXM2-16GB", None),
    ("cpu", None),
])
def test_peak_lookup(name, peak):
    assert peak_flops(name) == peak


def test_float32_has_no_table_peak():
    assert peak_flops("NVIDIA H100 80GB HBM3", "float32") is None


def test_mfu():
    per_token = flops_per_token(model_config("gpt2"))
    # 1M tokens/s of gpt2 on one H100 SXM (989 TFLOP/s) is 86%
    assert mfu(1_000_000, per_token, 989e12) == pytest.approx(0.8647, abs=1e-4)
    assert mfu(8_000_000, per_token, 989e12, devices=8) == pytest.approx(0.8647, abs=1e-4)
    assert mfu(1_000_000, per_token, None) is None
