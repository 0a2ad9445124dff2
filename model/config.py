"""GPT-2 model shapes. The four published sizes live in conf/model/, plus small ones for tests."""

from __future__ import annotations

from dataclasses import dataclass

from model.base.schema import ConfigError, param


@dataclass
class GPTConfig:
    name: str = param("gpt2", "config name, saved with checkpoints and exports")
    n_layer: int = param(12, "transformer blocks", ge=1)
    n_head: int = param(12, "attention heads per block", ge=1)
    n_embd: int = param(768, "width of the residual stream", ge=1)
    block_size: int = param(1024, "context length in tokens (positions embedded)", ge=1)
    vocab_size: int = param(50257, "vocabulary size (GPT-2 BPE: 50,257)", ge=1)
    dropout: float = param(0.0, "dropout probability (0 for pretraining)", ge=0.0, lt=1.0)
    bias: bool = param(True, "biases in Linear and LayerNorm layers, as GPT-2")

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError("n_embd", f"{self.n_embd} is not divisible by n_head={self.n_head}")

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameters with tied input and output embeddings, as GPT-2 (124,439,808 for gpt2).

        Counted from the shapes: token and position embeddings; per block two LayerNorms,
        attention (qkv projection and output projection) and the 4x MLP; the final LayerNorm.
        ``include_embeddings=False`` leaves out the position embedding, the convention for
        FLOP counts (the token embedding is shared with the output layer, so it stays).
        """
        d, b = self.n_embd, int(self.bias)
        layer_norm = d + d * b
        attention = (d * 3 * d + 3 * d * b) + (d * d + d * b)
        mlp = (d * 4 * d + 4 * d * b) + (4 * d * d + d * b)
        block = 2 * layer_norm + attention + mlp
        embeddings = self.vocab_size * d + (self.block_size * d if include_embeddings else 0)
        return embeddings + self.n_layer * block + layer_norm
