"""2-D projections of embeddings (PCA, t-SNE, UMAP) for the dashboard's embedding map."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..registry import Registry

PROJECTIONS: Registry[Callable[..., np.ndarray]] = Registry("projection")


class ProjectionUnavailable(RuntimeError):
    """A projection whose optional dependency is not installed; the message says what to do."""


def _check(embeddings: np.ndarray) -> np.ndarray:
    """Validate an (N, D) float array with at least 3 rows; return it as float32."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 embeddings to project, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return x


@PROJECTIONS.register("pca")
def project_pca(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """Principal components 1 and 2: fast, linear, deterministic."""
    from sklearn.decomposition import PCA

    x = _check(embeddings)  # (N, D)
    if x.shape[1] < 2:
        return np.concatenate([x, np.zeros_like(x)], axis=1)
    return PCA(n_components=2, random_state=seed).fit_transform(x)  # (N, 2)


@PROJECTIONS.register("tsne")
def project_tsne(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE on cosine distance; perplexity capped so that small galleries work."""
    from sklearn.manifold import TSNE

    x = _check(embeddings)  # (N, D)
    perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3)))
    tsne = TSNE(
        n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed
    )
    return tsne.fit_transform(x)  # (N, 2)


@PROJECTIONS.register("umap")
def project_umap(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """UMAP on cosine distance (needs the optional ``umap-learn`` package)."""
    try:
        import umap
    except ImportError:
        raise ProjectionUnavailable(
            "UMAP needs the optional package umap-learn (pip install umap-learn); "
            "choose PCA or t-SNE instead"
        ) from None
    x = _check(embeddings)  # (N, D)
    neighbours = int(min(15, x.shape[0] - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, metric="cosine", random_state=seed)
    return np.asarray(reducer.fit_transform(x))  # (N, 2)


def project(embeddings: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project ``(N, D)`` embeddings to ``(N, 2)`` with a method from ``PROJECTIONS``."""
    return PROJECTIONS.get(method)(embeddings, seed=seed)


def available_projections() -> list[str]:
    """Projection names whose dependencies are importable (UMAP only with umap-learn)."""
    import importlib.util

    names = [n for n in PROJECTIONS.names() if n != "umap"]
    if importlib.util.find_spec("umap") is not None:
        names.append("umap")
    return names
