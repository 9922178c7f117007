"""The retrieval model: encoders + projections + compositor behind ``encode_query``/``encode_target``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .colour import build_colour_features
from .compositors import build_compositor
from .config import MODEL_TYPE, ModelConfig
from .image_encoders import build_image_encoder
from .text_encoders import build_text_encoder

__all__ = ["ModelConfig", "RetrievalModel", "load_weights_strict"]

TEXT_MEMO_SIZE = 200_000  # frozen-encoder text features kept per model (then the memo restarts)


class RetrievalModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="fashion_retrieval",
    tags=["composed-image-retrieval", "fashion", "tirg", "image-retrieval"],
    pipeline_tag="image-feature-extraction",
):
    """One model for composed, text-only and image-only retrieval.

    ``query = normalize(compositor(P_img(image_features), P_txt(text_features)))`` and
    ``target = normalize(P_img(image_features))`` (the image projection is shared, as in
    TIRG). A missing image or text is replaced by a learned null embedding, so every model
    answers every kind of query. ``texts`` builds the LSTM vocabulary on first construction.
    """

    def __init__(self, config: ModelConfig | dict | None = None, texts: list[str] | None = None) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        config = dataclasses.replace(config or ModelConfig())  # own copy: vocab is filled below
        dim = config.embed_dim
        self.image_encoder = build_image_encoder(config.image_encoder, pretrained=config.pretrained,
                                                 activation=config.clip_activation.get(config.image_encoder))
        if config.image_size is not None:
            self.image_encoder.preprocess = dataclasses.replace(self.image_encoder.preprocess, size=config.image_size)
        pre = self.image_encoder.preprocess
        self.colour = build_colour_features(config.colour_features, pre.mean, pre.std)
        # Width of the middle stage's grid (ImageEncoder.forward); 0 when off.
        self.mid_dim = self.image_encoder.mid_channels() * config.mid_grid**2 if config.mid_grid else 0
        text_kw: dict[str, Any] = dict(config.text_kwargs)
        if config.text_encoder.startswith("open_clip:"):
            text_kw["activation"] = config.clip_activation.get(config.text_encoder)
        if config.vocab is not None:
            text_kw["vocab"] = config.vocab
        self.text_encoder = build_text_encoder(
            config.text_encoder, texts=texts, pretrained=config.pretrained, **text_kw
        )
        if hasattr(self.text_encoder, "vocab"):
            config.vocab = list(self.text_encoder.vocab.words)
        config.clip_activation = {enc.name: enc.activation for enc in (self.image_encoder, self.text_encoder)
                                  if getattr(enc, "activation", None)}
        if getattr(self.text_encoder, "known_words", None) is not None:  # the speller's training words
            config.text_kwargs = {**config.text_kwargs, "known_words": list(self.text_encoder.known_words)}
        if config.projection == "none":
            dim = config.embed_dim = self._shared_width(config)
            self.image_proj, self.text_proj = nn.Identity(), nn.Identity()
        elif config.projection == "image":
            if self.text_encoder.output_dim != dim:
                raise ValueError(f"projection 'image' takes the text features as they are, but {config.text_encoder} "
                                 f"gives {self.text_encoder.output_dim}-d features and embed_dim is {dim}; make them "
                                 "equal (lstm: hidden = embed_dim) or use projection 'linear'")
            self.image_proj, self.text_proj = nn.Linear(self.feature_dim, dim), nn.Identity()
        else:
            self.image_proj = nn.Linear(self.feature_dim, dim)
            self.text_proj = nn.Linear(self.text_encoder.output_dim, dim)
        self.compositor = build_compositor(config.compositor, dim, **config.compositor_kwargs)
        self.null_image = nn.Parameter(0.02 * torch.randn(dim))  # (D,)
        self.null_text = nn.Parameter(0.02 * torch.randn(dim))  # (D,)
        # Losses use  scale * cos(query, target): TIRG learns it; CLIP4Cir fixes it at 100
        # (a buffer then, so no optimiser can move it).
        scale = torch.tensor(float(config.normalize_scale))
        if config.learn_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.image_encoder.requires_grad_(not config.freeze_image_encoder)
        self.text_encoder.requires_grad_(not config.freeze_text_encoder)
        self.config = config
        self._hub_mixin_config = config  # what save_pretrained writes as config.json

    # ------------------------------------------------------------------ basics

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`image_features`: the backbone's pooled features, its middle stage's
        grid (``mid_grid``) and the colour descriptor."""
        return self.image_encoder.output_dim + self.mid_dim + self.colour.output_dim

    def _shared_width(self, config: ModelConfig) -> int:
        """The common width of image features and text features (``projection="none"``)."""
        if self.feature_dim != self.text_encoder.output_dim:
            raise ValueError(
                f"projection 'none' needs image and text features of one width, but "
                f"{config.image_encoder} (colour features {config.colour_features!r}) gives "
                f"{self.feature_dim} and {config.text_encoder} gives {self.text_encoder.output_dim}; "
                "use the two towers of one CLIP model without colour features, or projection 'linear'"
            )
        return self.feature_dim

    @property
    def logit_scale(self) -> torch.Tensor:
        """What losses multiply cosine similarities by: ``scale``, or ``scale**2`` when the scale
        multiplies both sides (``scale_both_sides``, TIRG)."""
        return self.scale * self.scale if self.config.scale_both_sides else self.scale

    @property
    def device(self) -> torch.device:
        """The device of the trainable heads."""
        return self.null_image.device

    def train(self, mode: bool = True) -> RetrievalModel:
        """Like ``nn.Module.train``, but frozen encoders stay in eval mode (BatchNorm statistics),
        and so do all encoders with ``encoders_eval_mode``."""
        super().train(mode)
        if self.config.freeze_image_encoder or self.config.encoders_eval_mode:
            self.image_encoder.eval()
        if self.config.freeze_text_encoder or self.config.encoders_eval_mode:
            self.text_encoder.eval()
        return self

    def transform(self, train: bool = False):
        """The ``ImageTransform`` (PIL -> (3, S, S) tensor) that matches the image backbone."""
        from ..data.transforms import ImageTransform

        p = self.image_encoder.preprocess
        return ImageTransform(
            p.size, p.mean, p.std, train=train, mode=self.config.preprocess, target_ratio=self.config.target_ratio
        )

    def load_encoders(self, source: str | Path) -> None:
        """Copy the image and text encoder weights of checkpoint ``source`` into this model.

        ``source``: a checkpoint folder (or a run folder: its ``best/`` when the run kept one,
        ``save_best``, else its ``final/``) or a Hub repo id,
        e.g. a CLIP4Cir stage-1 run whose fine-tuned CLIP a stage-2 combiner trains on. The
        checkpoint's encoders must be the same architectures as this model's; the rest of it
        (projections, compositor) is ignored.
        """
        path = Path(source)
        if path.is_dir() and not (path / "config.json").is_file():
            path = next((path / sub for sub in ("best", "final") if (path / sub / "config.json").is_file()), path)
        text = str(source)
        if not path.exists() and (text.startswith((".", "/", "~")) or text.count("/") > 1):
            # Not a Hub repo id ("name" or "owner/name"): a local checkpoint that is not there.
            raise FileNotFoundError(
                f"init_from {source}: no such checkpoint folder (train the run it comes from first, "
                "e.g. CLIP4Cir stage 1 before stage 2)"
            )
        src = type(self).from_pretrained(str(path) if path.exists() else str(source))
        for part in ("image_encoder", "text_encoder"):
            mine, theirs = getattr(self.config, part), getattr(src.config, part)
            if mine != theirs:
                raise ValueError(f"init_from {source}: its {part} is {theirs!r}, but this model's is {mine!r}")
            try:
                getattr(self, part).load_state_dict(getattr(src, part).state_dict(), strict=True)
            except RuntimeError as e:
                raise ValueError(f"init_from {source}: its {part} weights do not fit this model ({e})") from e
        self.__dict__.pop("_text_memo", None)  # features of the old text encoder

    # ------------------------------------------------------------------ features

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image features ``(B, 3, H, W) -> (B, Dimg)``: the backbone's pooled features, its middle
        stage's grid (``mid_grid``), then the colour descriptor (what the feature cache stores)."""
        if not isinstance(pixels, torch.Tensor):
            raise TypeError(f"images must be a preprocessed tensor (B, 3, H, W), got {type(pixels).__name__}")
        frozen = self.config.freeze_image_encoder
        pixels = pixels.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            pooled = self.image_encoder(pixels, mid_grid=self.config.mid_grid)  # (B, Dbackbone + Dgrid)
        if self.colour.output_dim == 0:
            return pooled
        with torch.no_grad():  # weight-free: nothing to learn through it
            colour = self.colour(pixels).to(pooled.dtype)  # (B, Dcolour)
        return torch.cat([pooled, colour], dim=1)

    def _projected_image(
        self, images: torch.Tensor | None, image_features: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``P_img`` of the images or of precomputed features -> (B, D), or None if neither."""
        if images is not None and image_features is not None:
            raise ValueError("give images or image_features, not both")
        if images is not None:
            image_features = self.image_features(images)
        if image_features is None:
            return None
        if image_features.dim() != 2 or image_features.shape[1] != self.feature_dim:
            raise ValueError(
                f"image_features must be (B, {self.feature_dim}) for {self.config.image_encoder} "
                f"with colour features {self.config.colour_features!r} and mid_grid {self.config.mid_grid}, "
                f"got {tuple(image_features.shape)}"
            )
        return self.image_proj(image_features.to(self.device))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Projected text embedding ``P_txt(text_encoder(texts))`` -> (B, D), not normalised."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str (wrap a single text in a list)")
        texts = list(texts)
        if not self.config.freeze_text_encoder:
            return self.text_proj(self.text_encoder(texts))  # (B, D)
        # A frozen encoder maps a text to the same features every time: keep them, so that a
        # large pretrained encoder (MiniLM) costs one pass per distinct text, not per step.
        memo = self.__dict__.setdefault("_text_memo", {})
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            with torch.no_grad():
                feats = self.text_encoder(todo).float().cpu()  # (T, Dtxt)
            if len(memo) + len(todo) > TEXT_MEMO_SIZE:
                memo.clear()
            memo.update(zip(todo, feats, strict=True))
        feats = torch.stack([memo[t] for t in texts]).to(self.device)  # (B, Dtxt)
        return self.text_proj(feats)

    def unknown_words(self, text: str) -> list[str] | None:
        """The words of ``text`` the text encoder cannot read; None: none it can
        (``TextEncoder.unknown_words``)."""
        return self.text_encoder.unknown_words(text)

    def remember_text_features(self, texts: list[str], features: torch.Tensor) -> None:
        """Give a frozen text encoder's features ``(T, Dtxt)`` of ``texts`` (e.g. from a cache)."""
        if not self.config.freeze_text_encoder:
            raise ValueError("text features can be remembered only for a frozen text encoder")
        if len(texts) != features.shape[0]:
            raise ValueError(f"{len(texts)} texts but {features.shape[0]} feature rows")
        memo = self.__dict__.setdefault("_text_memo", {})
        memo.update(zip(texts, features.float().cpu(), strict=True))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; also forgets the frozen text features kept so far."""
        self.__dict__.pop("_text_memo", None)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ the interface

    def encode_query(
        self, images: torch.Tensor | None = None, texts: list[str] | None = None, *,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L2-normalised query embeddings (B, D) from images and/or texts (either may be None)."""
        img = self._projected_image(images, image_features)  # (B, D) or None
        txt = self.encode_text(texts) if texts is not None else None  # (B, D) or None
        if img is None and txt is None:
            raise ValueError("encode_query needs images (or image_features), texts, or both")
        if img is not None and txt is not None and img.shape[0] != txt.shape[0]:
            raise ValueError(f"batch sizes differ: {img.shape[0]} images but {txt.shape[0]} texts")
        batch = (img if img is not None else txt).shape[0]
        null_img = self.null_image.expand(batch, -1)  # (B, D)
        null_txt = self.null_text.expand(batch, -1)
        img = null_img if img is None else img
        txt = null_txt if txt is None else txt
        p = self.config.modality_dropout
        if self.training and p > 0:
            # Drop one modality for a fraction p of the queries, image or text at random.
            drop = torch.rand(batch, 1, device=img.device) < p  # (B, 1)
            drop_img = drop & (torch.rand(batch, 1, device=img.device) < 0.5)
            img = torch.where(drop_img, null_img, img)
            txt = torch.where(drop & ~drop_img, null_txt, txt)
        return F.normalize(self.compositor(img, txt), dim=-1)

    def encode_target(
        self, images: torch.Tensor | None = None, *, image_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L2-normalised target (gallery) embeddings (B, D)."""
        img = self._projected_image(images, image_features)
        if img is None:
            raise ValueError("encode_target needs images or image_features")
        return F.normalize(img, dim=-1)

    def forward(
        self, images: torch.Tensor | None = None, texts: list[str] | None = None, *,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same as :meth:`encode_query`."""
        return self.encode_query(images, texts, image_features=image_features)

    # ------------------------------------------------------------------ hub mixin

    @classmethod
    def _from_pretrained(
        cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
        force_download: bool, local_files_only: bool, token: str | bool | None,
        map_location: str = "cpu", strict: bool = True, **model_kwargs: Any,
    ) -> RetrievalModel:
        """Build from config.json without downloading backbone weights, then load model.safetensors strictly."""
        from huggingface_hub import constants, hf_hub_download

        raw = model_kwargs.pop("config", None)
        if raw is None:
            raise ValueError(f"{model_id}: config.json is missing; it is not a {MODEL_TYPE} checkpoint")
        if isinstance(raw, dict) and raw.get("model_type") != MODEL_TYPE:
            raise ValueError(
                f"{model_id}: config.json describes a {raw.get('model_type')!r} model, "
                f"not a {MODEL_TYPE} RetrievalModel: load it with its own library (e.g. "
                "transformers.AutoModel), or use a repo written by fashion_retrieval.checkpoints.save_checkpoint"
            )
        config = raw if isinstance(raw, ModelConfig) else ModelConfig.from_dict(raw)
        with _skipped_init(config):  # every weight comes from the file below (strict)
            model = cls(dataclasses.replace(config, pretrained=False), **model_kwargs)
        model.config.pretrained = config.pretrained
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
        else:
            weights = hf_hub_download(
                repo_id=model_id, filename=constants.SAFETENSORS_SINGLE_FILE, revision=revision,
                cache_dir=cache_dir, force_download=force_download, token=token,
                local_files_only=local_files_only,
            )
        load_weights_strict(model, weights, map_location=map_location)
        return model.eval()


def _skipped_init(config: ModelConfig) -> Any:
    """A context in which the encoders skip their random initialisation (the weights are loaded
    right after): ``skip_init.skipped_init`` for BERT and EfficientNet-Lite0, and transformers'
    own for another transformers text encoder."""
    import contextlib

    from .bert import is_bert_folder
    from .skip_init import skipped_init

    name = config.text_encoder
    if not name.startswith("hf:") or is_bert_folder(name.split(":", 1)[1]):  # no transformers import
        return skipped_init()
    try:  # transformers >= 5
        from transformers.initialization import no_init_weights
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    stack = contextlib.ExitStack()
    stack.enter_context(skipped_init())
    stack.enter_context(no_init_weights())
    return stack


def load_weights_strict(model: nn.Module, path: str | Path, map_location: str = "cpu") -> None:
    """Load a safetensors file into ``model``; a missing, corrupt or mismatched file is a ``ValueError`` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the checkpoint has no weights (save it again)")
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(
            f"{path} is not a readable safetensors file ({e}); it may be truncated: re-save "
            "or re-download the checkpoint"
        ) from e
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing weights {result.missing_keys[:8]} ({len(result.missing_keys)} in all)")
    if result.unexpected_keys:
        problems.append(f"unexpected weights {result.unexpected_keys[:8]} ({len(result.unexpected_keys)} in all)")
    if problems:
        raise ValueError(
            f"{path} does not match the model described by its config.json: " + "; ".join(problems)
        )
