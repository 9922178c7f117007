"""Encoders, compositors and the retrieval model.

Import from the submodules (``fashion_retrieval.models.retrieval`` etc.) or from here; nothing
is built at import time.
"""

from .compositors import COMPOSITORS, Compositor, build_compositor
from .config import ModelConfig
from .image_encoders import IMAGE_ENCODERS, ImageEncoder, PreprocessConfig, build_image_encoder
from .retrieval import RetrievalModel
from .text_encoders import TEXT_ENCODERS, TextEncoder, build_text_encoder
from .vocab import Vocabulary, tokenize

__all__ = [
    "COMPOSITORS", "IMAGE_ENCODERS", "TEXT_ENCODERS", "Compositor", "ImageEncoder", "ModelConfig",
    "PreprocessConfig", "RetrievalModel", "TextEncoder", "Vocabulary", "build_compositor",
    "build_image_encoder", "build_text_encoder", "tokenize",
]
