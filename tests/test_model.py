"""GPT-2 against transformers' GPT2LMHeadModel: sizes, logits both ways, causality, padding, export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from model import hf, weights
from model.base.folders import COMPLETE
from model.config import GPTConfig
from model.gpt2 import GPT, padded_vocab_size
from tests.test_model_config import EXPECTED, model_config

SMALL = GPTConfig(name="small", n_layer=3, n_head=4, n_embd=128, block_size=64)


def random_model(cfg: GPTConfig, seed: int = 0) -> GPT:
    """Our model with random weights everywhere (biases and LayerNorms too, so a mix-up shows)."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.05)
        model.transformer.wte.weight[cfg.vocab_size:].normal_(0.0, 1.0)  # padding: must never show
    return model.eval()


def hf_model(folder: Path) -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(folder, local_files_only=True).eval()


def hf_random(cfg: GPTConfig, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.block_size,
                        vocab_size=cfg.vocab_size, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.05)
    return GPT2LMHeadModel(config).eval()


def tokens(cfg: GPTConfig, batch: int = 2, length: int | None = None, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, length or cfg.block_size), generator=g)


@torch.no_grad()
def max_logit_diff(ours: GPT, theirs: GPT2LMHeadModel, idx: torch.Tensor) -> float:
    a, b = ours(idx)[0], theirs(idx).logits
    assert a.shape == b.shape == (*idx.shape, ours.config.vocab_size)
    return (a - b).abs().max().item()


# --- shape and size ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_on_the_meta_device(name):
    cfg = model_config(name)
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_params() == EXPECTED[name] == cfg.num_params()
    assert model.transformer.wte.weight.shape == (50304, cfg.n_embd)  # padded to a multiple of 64
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt2_names_and_initialization():
    cfg = model_config("gpt2-tiny")
    model = GPT(cfg)
    names = set(model.state_dict())
    for name in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                 "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_proj.bias",
                 "transformer.h.0.ln_2.bias", "transformer.h.0.mlp.c_fc.weight",
                 "transformer.h.0.mlp.c_proj.weight", "transformer.ln_f.weight"):
        assert name in names
    assert torch.count_nonzero(model.transformer.wte.weight[cfg.vocab_size:]) == 0
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith(".bias")
               and ".ln_" not in n)
    residual = torch.cat([model.transformer.h[i].attn.c_proj.weight.flatten() for i in range(cfg.n_layer)])
    fc = torch.cat([model.transformer.h[i].mlp.c_fc.weight.flatten() for i in range(cfg.n_layer)])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * cfg.n_layer), rel=0.1)
    assert fc.std().item() == pytest.approx(0.02, rel=0.05)


def test_without_biases():
    cfg = GPTConfig(name="nobias", n_layer=2, n_head=2, n_embd=64, block_size=32, bias=False)
    model = GPT(cfg)
    assert not any(n.endswith(".bias") for n in model.state_dict())
    assert model.num_params() == cfg.num_params()


# --- logits against transformers ----------------------------------------------------------------


def test_ours_to_hf_folder_to_transformers(tmp_path):
    ours = random_model(SMALL)
    hf.export(ours, tmp_path / "hf")
    assert max_logit_diff(ours, hf_model(tmp_path / "hf"), tokens(SMALL)) <= 1e-4


def test_transformers_to_ours(tmp_path):
    theirs = hf_random(SMALL)
    theirs.save_pretrained(tmp_path / "hf")
    ours = hf.load_hf(tmp_path / "hf")
    assert ours.config.n_layer == SMALL.n_layer and ours.config.block_size == SMALL.block_size
    assert max_logit_diff(ours, theirs, tokens(SMALL)) <= 1e-4


def test_an_untransposed_square_weight_is_caught(tmp_path, monkeypatch):
    """attn.c_proj is square: left in nn.Linear's layout it loads without any error, so only the
    logits show it. The parity check above must see the difference."""
    ours = random_model(SMALL)
    monkeypatch.setattr(hf, "CONV1D", tuple(n for n in hf.CONV1D if n != "attn.c_proj.weight"))
    hf.export(ours, tmp_path / "broken")  # loads fine...
    assert max_logit_diff(ours, hf_model(tmp_path / "broken"), tokens(SMALL)) > 1e-2  # ...and is wrong


def test_exported_folder_layout(tmp_path):
    from safetensors import safe_open

    ours = random_model(SMALL)
    hf.export(ours, tmp_path / "hf")
    with safe_open(tmp_path / "hf" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("transformer.wte.weight").shape == (50257, SMALL.n_embd)
        assert f.get_tensor("transformer.h.0.mlp.c_fc.weight").shape == (SMALL.n_embd, 4 * SMALL.n_embd)
        assert f.metadata() == {"format": "pt"}
    assert "lm_head.weight" not in keys
    import json

    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["activation_function"], config["layer_norm_epsilon"], config["tie_word_embeddings"],
            config["eos_token_id"], config["bos_token_id"]) == ("gelu_new", 1e-5, True, 50256, 50256)
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (tmp_path / "hf").iterdir()}


def test_import_refuses_another_activation(tmp_path):
    theirs = hf_random(SMALL)
    theirs.config.activation_function = "gelu"
    theirs.save_pretrained(tmp_path / "hf")
    with pytest.raises(ValueError, match="activation_function 'gelu'"):
        hf.load_hf(tmp_path / "hf")


@pytest.mark.slow
def test_gpt2_124m_parity_both_ways(tmp_path):
    cfg = model_config("gpt2")
    idx = tokens(cfg, batch=1, length=128)
    ours = random_model(cfg)
    hf.export(ours, tmp_path / "ours")
    assert max_logit_diff(ours, hf_model(tmp_path / "ours"), idx) <= 1e-4
    del ours
    theirs = hf_random(cfg, seed=3)
    theirs.save_pretrained(tmp_path / "theirs")
    imported = hf.load_hf(tmp_path / "theirs")
    assert imported.num_params() == 124_439_808
    assert max_logit_diff(imported, theirs, idx) <= 1e-4


# --- the network's own properties ---------------------------------------------------------------


@torch.no_grad()
def test_causality():
    model = random_model(SMALL)
    idx = tokens(SMALL, batch=1)
    t = 40
    changed = idx.clone()
    changed[0, t] = (idx[0, t] + 1) % SMALL.vocab_size
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
    assert (a[:, t] - b[:, t]).abs().max() > 1e-3


@torch.no_grad()
def test_padding_is_never_a_prediction():
    model = random_model(SMALL)
    idx = tokens(SMALL)
    logits, loss = model(idx, targets=idx)
    assert logits.shape[-1] == 50257 and padded_vocab_size(SMALL) == 50304
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 50257), idx.flatten())
    torch.testing.assert_close(loss, expected)
    last, _ = model(idx, last_only=True)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_loss_ignores_minus_one_and_trains():
    model = GPT(GPTConfig(name="t", n_layer=1, n_head=2, n_embd=32, block_size=16))
    idx = tokens(model.config, batch=4, length=16)
    targets = idx.roll(-1, dims=1)
    targets[:, -1] = -1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(12):
        _, loss = model(idx, targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(math.log(50257), rel=0.05)  # a fresh model guesses uniformly
    assert loss.item() < first - 2
    assert torch.count_nonzero(model.transformer.wte.weight.grad[50257:]) == 0


def test_model_folder_round_trip_and_resolution(tmp_path):
    model = random_model(SMALL)
    run = tmp_path / "run"
    weights.save(model, run / "checkpoints" / "step_0000010")
    (run / "checkpoints" / "step_0000010" / COMPLETE).touch()
    weights.save(random_model(SMALL, seed=5), run / "checkpoints" / "step_0000020")  # no marker: incomplete
    assert weights.resolve(run) == ("ours", run / "checkpoints" / "step_0000010")
    loaded = hf.load_any(run)
    idx = tokens(SMALL)
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    hf.export(model, tmp_path / "hf")
    assert weights.resolve(tmp_path / "hf") == ("hf", tmp_path / "hf")
    assert weights.resolve(f"hf:{tmp_path / 'hf'}") == ("hf", tmp_path / "hf")
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        weights.resolve(tmp_path / "empty-run")
