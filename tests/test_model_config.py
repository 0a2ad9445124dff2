import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import GPT2Config, GPT2LMHeadModel

from model.base.schema import ConfigError, validate
from model.config import GPTConfig
from tests.conftest import REPO
from train.config import register

# OpenAI's published sizes, with tied embeddings and the 50,257-token vocabulary.
EXPECTED = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}


def model_config(name: str) -> GPTConfig:
    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose(config_name="train", overrides=[f"model={name}", "data.dir=x"])
    from omegaconf import OmegaConf

    return OmegaConf.to_object(cfg.model)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_sizes(name):
    cfg = model_config(name)
    assert cfg.name == name
    assert cfg.num_params() == EXPECTED[name]


@pytest.mark.parametrize("name", ["gpt2-tiny", "gpt2"])
def test_count_matches_transformers(name):
    cfg = model_config(name)
    hf = GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                    n_positions=cfg.block_size, vocab_size=cfg.vocab_size, tie_word_embeddings=True)
    with torch.device("meta"):
        model = GPT2LMHeadModel(hf)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(unique.values()) == cfg.num_params()


def test_head_divisibility_is_checked():
    with pytest.raises(ConfigError, match="n_embd: 100 is not divisible by n_head=3"):
        validate(GPTConfig(n_embd=100, n_head=3))


@pytest.mark.parametrize(("name", "lr", "batch"), [
    ("gpt2", 6e-4, 524_288), ("gpt2-medium", 3e-4, 524_288), ("gpt2-large", 2.5e-4, 524_288),
    ("gpt2-xl", 6e-4, 1_048_576),
])
def test_per_size_recipes_are_llmcs(name, lr, batch):
    from omegaconf import OmegaConf

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = OmegaConf.to_object(compose(config_name="train", overrides=[f"model={name}", "data.dir=x"]))
        overridden = compose(config_name="train",
                             overrides=[f"model={name}", "data.dir=x", "optim.max_lr=1e-4"])
    assert (cfg.optim.max_lr, cfg.total_batch_tokens, cfg.optim.warmup_steps) == (lr, batch, 700)
    assert overridden.optim.max_lr == 1e-4  # the command line still wins
