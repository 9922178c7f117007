"""A BERT encoder and its WordPiece tokenizer in plain torch and ``tokenizers``.

MiniLM (``minilm``) and any other BERT folder (``hf:<folder>`` whose ``config.json`` says
``"model_type": "bert"``) run here instead of through ``transformers.AutoModel``: importing
transformers' modeling code costs about 2 s at every start (it pulls torch's compiler and
distributed packages), more than loading the five default models. The parameter names are
those of ``transformers.BertModel``, so checkpoints and the packaged weights load either way,
and the outputs equal BertModel's (``tests/test_bert.py`` compares them bit for bit): the
same operations in the same order, with the attention of ``scaled_dot_product_attention``
under the same padding mask. Dropout follows the config in training, as BertModel's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .skip_init import build, skipped_init, skipping


@dataclass(frozen=True)
class BertSettings:
    """The fields of a BERT ``config.json`` that this encoder reads."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    @classmethod
    def read(cls, folder: str | Path) -> BertSettings | None:
        """The settings of the model in ``folder``; None when it is not a plain BERT encoder this
        module runs exactly (another architecture, activation, position scheme or a decoder)."""
        try:
            raw = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        plain = (
            raw.get("model_type") == "bert" and raw.get("hidden_act", "gelu") == "gelu"
            and raw.get("position_embedding_type", "absolute") == "absolute"
            and not raw.get("is_decoder") and not raw.get("add_cross_attention")
            and (Path(folder) / "tokenizer.json").is_file()
        )
        if not plain:
            return None
        try:
            return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        except TypeError:  # a required field missing
            return None


class _Embeddings(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.token_type_embeddings(torch.zeros_like(ids))
        x = x + self.position_embeddings(positions)[None]
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.heads, self.head_dim = s.num_attention_heads, s.hidden_size // s.num_attention_heads
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)
        self.dropout_p = s.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        shape = (*x.shape[:-1], self.heads, self.head_dim)  # (B, T, heads, head_dim)
        q, k, v = (layer(x).view(shape).transpose(1, 2) for layer in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0,
            scale=self.head_dim**-0.5, is_causal=False,
        )  # (B, heads, T, head_dim)
        return out.transpose(1, 2).contiguous().reshape(*x.shape[:-1], -1).contiguous()


class _Output(nn.Module):
    """Dense, dropout, then LayerNorm of the sum with the block's input."""

    def __init__(self, d_in: int, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.self = _SelfAttention(s)
        self.output = _Output(s.hidden_size, s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # the exact (erf) GELU of BERT's "gelu"


class _Layer(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.attention = _Attention(s)
        self.intermediate = _Intermediate(s)
        self.output = _Output(s.intermediate_size, s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(x, mask)
        return self.output(self.intermediate(attended), attended)


class _Encoder(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(s) for _ in range(s.num_hidden_layers))


class _Pooler(nn.Module):
    """BertModel's pooler: kept for its weights (the checkpoints hold them); mean pooling
    over the token states is what the text encoder uses."""

    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.hidden_size)


class BertEncoder(nn.Module):
    """BERT's token states: ``forward(input_ids, attention_mask) -> (B, T, hidden)``."""

    def __init__(self, settings: BertSettings) -> None:
        super().__init__()
        self.settings = settings
        self.embeddings = _Embeddings(settings)
        self.encoder = _Encoder(settings)
        self.pooler = _Pooler(settings)

    @classmethod
    def build(cls, settings: BertSettings) -> BertEncoder:
        """A new encoder: BERT's initialisation (normal(0, 0.02) weights, zero biases, unit
        LayerNorms), or uninitialised memory inside :func:`skip_init.skipped_init`."""
        if skipping():
            return build(lambda: cls(settings))
        model = cls(settings)
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        return model

    @classmethod
    def from_folder(cls, folder: str | Path, settings: BertSettings) -> BertEncoder:
        """The encoder with the weights of ``folder/model.safetensors`` (BertModel's names, with or
        without a ``bert.`` prefix); a missing or unfitting weight is a ``ValueError`` naming it."""
        from safetensors.torch import load_file

        file = Path(folder) / "model.safetensors"
        if not file.is_file():
            raise OSError(f"{file} is missing: the BERT folder {folder} has no safetensors weights")
        state = {k.removeprefix("bert."): v for k, v in load_file(str(file)).items()}
        state = {k: v for k, v in state.items() if not k.endswith(("position_ids", "token_type_ids"))}
        with skipped_init():
            model = cls.build(settings)
        own = set(model.state_dict())
        missing, extra = sorted(own - set(state)), sorted(k for k in set(state) - own if not k.startswith("cls."))
        if missing or extra:
            raise ValueError(f"{file} does not fit a BERT encoder of its config.json: "
                             f"missing {missing[:6]}, unexpected {extra[:6]}")
        model.load_state_dict({k: state[k] for k in own}, strict=True)
        return model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        # A padded batch attends to its real tokens only (the same boolean mask BertModel gives
        # scaled_dot_product_attention); an unpadded one without a mask, as BertModel.
        mask = None
        if not bool(attention_mask.all()):
            b, t = input_ids.shape
            mask = attention_mask.bool()[:, None, None, :].expand(b, 1, t, t)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


class WordPieceTokenizer:
    """The folder's ``tokenizer.json`` through ``tokenizers``: padded, truncated batches of ids,
    and what the spelling corrector and the unknown-word check read (``get_vocab``,
    ``tokenize``, ``unk_token``)."""

    def __init__(self, folder: str | Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        config_file = Path(folder) / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        self._tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.unk_token = config.get("unk_token", "[UNK]")
        pad_token = config.get("pad_token", "[PAD]")
        pad_id = self._tok.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"{folder}: the pad token {pad_token!r} is not in its tokenizer's vocabulary")
        limit = min(max_length, int(config.get("model_max_length", max_length)))
        self._tok.enable_truncation(max_length=limit)
        self._tok.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the batch's longest
        self._plain = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self._plain.no_truncation()
        self._plain.no_padding()

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), both (B, T) int64."""
        encodings = self._tok.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab()

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of ``text``, without special tokens."""
        return self._plain.encode(text, add_special_tokens=False).tokens


def is_bert_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a plain BERT encoder this module runs."""
    return BertSettings.read(folder) is not None


__all__ = ["BertEncoder", "BertSettings", "WordPieceTokenizer", "is_bert_folder"]
