"""Retrieval evaluation on embeddings: ranking metrics and the data sets' protocols.

``evaluate(model, dataset)`` is the entry point; ``EVAL_PROTOCOLS`` lists the protocols.
"""

from fashion_retrieval.evaluation.base import EVAL_PROTOCOLS
from fashion_retrieval.evaluation.embeddings import EmbeddingSource, ModelEmbeddings
from fashion_retrieval.evaluation.protocols import evaluate, evaluate_embeddings

__all__ = [
    "EVAL_PROTOCOLS",
    "EmbeddingSource",
    "ModelEmbeddings",
    "evaluate",
    "evaluate_embeddings",
]
