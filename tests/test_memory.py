"""The trainer's memory estimate against torch's own count of a real step's tensors."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from model.config import GPTConfig
from model.gpt2 import GPT
from model.memory import GIB, step_memory, stored_params
from tests.conftest import REPO
from train.config import register


def measured_peak(cfg: GPTConfig, batch: int, half: bool) -> dict:
    """Peak bytes by kind over two steps, every tensor counted by MemTracker; fake tensors: no
    memory, no arithmetic, the real model code and optimizer."""
    with FakeTensorMode():
        model = GPT(cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size))
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            for _ in range(2):
                tracker.reset_mod_stats()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                    loss = model(x, x)[1]
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    return {kind.value if hasattr(kind, "value") else kind: n for kind, n in peak.items()}


@pytest.mark.parametrize(("shape", "half"), [((6, 384, 6, 512), True), ((2, 256, 4, 256), False)],
                         ids=["6x384-bf16", "2x256-fp32"])
def test_the_estimate_matches_what_a_step_holds(shape, half):
    n_layer, n_embd, n_head, block = shape
    cfg = GPTConfig(name="probe", n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block,
                    vocab_size=50257, dropout=0.0, bias=True)
    got = measured_peak(cfg, batch=4, half=half)
    est = step_memory(cfg, micro_batch_size=4, half_precision=half)
    # at the peak (start of the backward) the gradients are not made yet: the estimate holds them,
    # as they are held from the second micro-batch of a step on
    assert got["Parameter"] + got["Optstate"] == pytest.approx(12 * stored_params(cfg), rel=1e-3)
    held = got["Activation"] + got["Temp"]  # on CPU the activations include autocast's copies
    assert est.activations + est.weight_copies + est.loss_gradient == pytest.approx(held, rel=0.02)


@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"])
def test_each_recipes_micro_batch_fits_an_80_gb_gpu_under_ddp(name):
    from omegaconf import OmegaConf

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = OmegaConf.to_object(compose(config_name="train", overrides=[f"model={name}", "data.dir=x"]))
    h100 = 79.1  # GiB an "80 GB" H100 reports; 1.5 of them for the CUDA context and the allocator
    need = step_memory(cfg.model, cfg.micro_batch_size, world_size=8).total / GIB
    assert need < h100 - 1.5, f"{name} at micro-batch {cfg.micro_batch_size}: {need:.1f} GiB"
    if name == "gpt2-xl":  # the default of the other sizes would not fit
        assert step_memory(cfg.model, 16, world_size=8).total / GIB > h100
