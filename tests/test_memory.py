"""The trainer's memory estimate against torch's own count of a real step's tensors, and the state one
rank keeps under DDP and FSDP2 against the tensors FSDP2 and the optimizers make."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from hydra import compose, initialize_config_dir
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from model.config import GPTConfig
from model.gpt2 import BLOCK_MATRICES, GPT
from model.memory import GIB, state_bytes_per_rank, step_memory, stored_params
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


# Widths that 2 and 4 ranks do not divide (30, 90, 37 rows): FSDP2 pads their chunks.
ODD = GPTConfig(name="odd", n_layer=2, n_head=3, n_embd=30, block_size=37, vocab_size=101, dropout=0.0,
                bias=True)


def xl() -> GPTConfig:
    return GPTConfig(name="gpt2-xl", n_layer=48, n_head=25, n_embd=1600)


def meta_params(cfg: GPTConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = GPT(cfg)
    unique = {id(p): (name, p.shape) for name, p in model.named_parameters(remove_duplicate=False)}
    return dict(unique.values())


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_the_state_per_rank_is_fsdp2s_padded_chunks(ranks):
    shapes = meta_params(ODD)
    assert len(shapes) == len(list(GPT(ODD).parameters())), "the tied embedding counted once"
    chunk = {name: math.ceil(shape[0] / ranks) * math.prod(shape[1:]) for name, shape in shapes.items()}
    if ranks == 4:
        assert sum(chunk.values()) * 4 > stored_params(ODD), "the shape pads"
    fsdp = state_bytes_per_rank(ODD, ranks, "fsdp")
    assert (fsdp.params, fsdp.grads, fsdp.optimizer) == (4 * sum(chunk.values()), 4 * sum(chunk.values()),
                                                         8 * sum(chunk.values()))
    assert fsdp.total == fsdp.params + fsdp.grads + fsdp.optimizer
    ddp = state_bytes_per_rank(ODD, ranks, "ddp")
    assert ddp.total == 16 * stored_params(ODD) == state_bytes_per_rank(ODD, 1, "fsdp").total


def test_the_state_per_rank_is_what_fsdp2_and_adamw_allocate_on_rank_0():
    """A real ``fully_shard`` step on 4 ranks of torch's fake process group (one process: the
    collectives move nothing, the tensors are allocated as on a real rank 0), every storage counted."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", rank=0, world_size=4, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (4,))
        model = GPT(ODD)
        for block in model.transformer.h:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randint(0, ODD.vocab_size, (2, ODD.block_size))
        model(x, x)[1].backward()
        optimizer.step()

        def stored(tensors) -> int:  # views of one buffer (the reduce-scatter's gradients) once
            storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
            return sum(storages.values())

        params = list(model.parameters())
        got = (stored(p.to_local() for p in params), stored(p.grad.to_local() for p in params),
               stored(v.to_local() for p in params for k, v in optimizer.state[p].items() if k != "step"))
    finally:
        dist.destroy_process_group()
    want = state_bytes_per_rank(ODD, 4, "fsdp")
    assert got == (want.params, want.grads, want.optimizer)


def test_muons_state_is_4_bytes_less_per_block_matrix_parameter():
    shapes = meta_params(ODD)
    for ranks, parallel in ((1, "ddp"), (4, "ddp"), (4, "fsdp")):
        shards = ranks if parallel == "fsdp" else 1
        matrices = sum(math.ceil(s[0] / shards) * math.prod(s[1:]) for name, s in shapes.items()
                       if name.endswith(BLOCK_MATRICES))
        assert matrices and len([n for n in shapes if n.endswith(BLOCK_MATRICES)]) == 4 * ODD.n_layer
        adamw, muon = (state_bytes_per_rank(ODD, ranks, parallel, opt) for opt in ("adamw", "muon"))
        assert adamw.total - muon.total == adamw.optimizer - muon.optimizer == 4 * matrices
        assert step_memory(ODD, 2, world_size=ranks, parallel=parallel, optimizer="muon").total \
            == step_memory(ODD, 2, world_size=ranks, parallel=parallel).total - 4 * matrices


def test_fsdp_peaks_below_ddp_for_gpt2_xl_and_shrinks_with_the_ranks():
    ddp = step_memory(xl(), 8, world_size=8)
    peaks = [step_memory(xl(), 8, world_size=n, parallel="fsdp") for n in (2, 8, 32)]
    assert all(p.total < ddp.total for p in peaks)
    assert peaks[0].total > peaks[1].total > peaks[2].total
    assert ddp.total - peaks[1].total > 25 * GIB, "the state and DDP's buckets, mostly gone"
    for peak in peaks:  # what sharding does not touch
        assert (peak.activations, peak.loss_gradient) == (ddp.activations, ddp.loss_gradient)
    assert "1/8 each" in peaks[1].describe() and "reduce-scattered" in peaks[1].describe()
    assert "DDP buckets" in ddp.describe()


def test_fsdps_unsharded_weights_and_gradients():
    """The root (token embedding, positions, final LayerNorm) unsharded in fp32 with autocast's copy
    of the output matrix, two blocks in the compute dtype; one block's and the root's gradients in
    fp32."""
    cfg = xl()
    h, root = cfg.n_embd, (50304 + cfg.block_size) * cfg.n_embd + 2 * cfg.n_embd
    block = 12 * h * h + 13 * h
    for half, size in ((True, 2), (False, 4)):
        peak = step_memory(cfg, 4, half_precision=half, world_size=8, parallel="fsdp")
        assert peak.weight_copies == 4 * root + (2 * 50304 * h if half else 0) + size * 2 * block
        assert peak.communication == 4 * (root + block)
    assert step_memory(cfg, 4, world_size=1).communication == 0
    assert step_memory(cfg, 4, world_size=2).communication == 4 * stored_params(cfg)
