"""A BERT encoder with mean pooling: sentence-transformers' all-MiniLM-L6-v2, as a plain module.

Parameter names follow Hugging Face's ``BertModel`` so the published safetensors load directly.
Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 ``(N, T)``; output
``sentence_embedding`` float32 ``(N, hidden)``: the mean of the last hidden states over the
tokens the attention mask keeps (sentence-transformers' pooling, before its L2 normalization,
which does not change cosine similarity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BertConfig", "MiniLM"]


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # (1, T)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.LayerNorm(x + self.token_type_embeddings(token_type_ids))  # (N, T, H)


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        n, t, h = x.shape
        hs = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(n, t, self.heads, hs).transpose(1, 2)  # (N, nh, T, hs)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hs) + mask_bias  # (N, nh, T, T)
        context = scores.softmax(-1) @ v  # (N, nh, T, hs)
        return context.transpose(1, 2).reshape(n, t, h)  # (N, T, H)


class _DenseNorm(nn.Module):
    """Linear, then LayerNorm of (output + residual): BERT's "output" blocks."""

    def __init__(self, cin: int, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cin, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden_size, c)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask_bias), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))  # exact (erf) GELU, as BERT


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c.intermediate_size, c)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, mask_bias)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask_bias)
        return x


class MiniLM(nn.Module):
    def __init__(self, config: BertConfig | None = None) -> None:
        super().__init__()
        c = config or BertConfig()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        mask = attention_mask.to(torch.float32)  # (N, T)
        mask_bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min  # (N, 1, 1, T)
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), mask_bias)  # (N, T, H)
        summed = (hidden * mask[:, :, None]).sum(1)  # (N, H)
        return summed / mask.sum(1, keepdim=True).clamp(min=1e-9)
