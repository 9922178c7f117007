"""PCA and PCA whitening of embeddings, fitted on a gallery (image-to-image post-processing).

Pretrained backbone features are anisotropic: a few directions (lighting, background,
photo style) carry much of the variance and are shared by every item, so they dominate
inner products without telling products apart. Fitting PCA on the gallery and rescaling
every principal direction to unit variance ("whitening") removes that bias; projecting on
the top ``dim`` directions also shrinks the index.

Modes (``POSTPROCESS_MODES``):

- ``none``: L2-normalise only;
- ``pca``: centre, project on the top ``dim`` principal directions, L2-normalise;
- ``whiten``: as ``pca``, then divide each direction by the square root of its (shrunk,
  regularised) eigenvalue, then L2-normalise.

Eigenvalues are shrunk towards their mean (``shrinkage`` in [0, 1]) and regularised by
``eps`` times the largest one, so directions of near-zero variance are not blown up.
A fitted :class:`PCAWhitening` saves to safetensors (``save``/``load``) beside the index.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashion_retrieval.registry import Registry

WHITENING_FILE = "whitening.safetensors"
FORMAT = "fashion_retrieval.search.whitening/1"
DEFAULT_EPS = 1e-6
_FIT_CHUNK = 8192  # rows per covariance update, so float64 copies of a large gallery stay small

POSTPROCESS_MODES: Registry[Callable[..., PCAWhitening]] = Registry("post-processing mode")


def _as_matrix(x: Any, name: str) -> torch.Tensor:
    """``x`` as a finite 2-D CPU tensor; ``ValueError`` naming the problem otherwise."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a numeric (N, D) matrix: {err}") from err
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold numbers, got dtype {t.dtype}")
    bad = ~torch.isfinite(t).all(dim=1)  # (N,)
    if bad.any():
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"{name} contains NaN or infinite values in {int(bad.sum())} rows, e.g. rows {rows}"
        )
    return t


def _covariance(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``(D, D)`` sample covariance of ``x (N, D)`` around ``mean``, in float64, by chunks."""
    cov = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], _FIT_CHUNK):
        xc = x[start : start + _FIT_CHUNK].double() - mean  # (c, D)
        cov += xc.t() @ xc
    return cov / (x.shape[0] - 1)


def _principal_axes(x: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``(r,)`` (descending) and unit eigenvectors ``(D, r)`` of the covariance.

    With fewer items than dimensions the ``(N, N)`` Gram matrix is decomposed instead of the
    ``(D, D)`` covariance (same non-zero spectrum, much cheaper).
    """
    n, d = x.shape
    if n > d:
        vals, vecs = torch.linalg.eigh(_covariance(x, mean))  # ascending
        return vals.flip(0), vecs.flip(1)
    xc = x.double() - mean  # (N, D)
    vals, u = torch.linalg.eigh(xc @ xc.t() / (n - 1))  # (N,), (N, N)
    vals, u = vals.flip(0).clamp(min=0), u.flip(1)
    vecs = xc.t() @ u  # (D, N): un-normalised eigenvectors of the covariance
    return vals, vecs / vecs.norm(dim=0).clamp(min=1e-300)


def _numerical_rank(vals: torch.Tensor, n: int, d: int) -> int:
    """How many eigenvalues stand clear of round-off (at most N - 1 after centring)."""
    if vals.numel() == 0 or vals[0] <= 0:
        return 0
    tol = vals[0] * max(n, d) * torch.finfo(torch.float64).eps * 10
    return min(int((vals > tol).sum()), n - 1)


class PCAWhitening:
    """A fitted post-processor: ``transform(x (B, D)) -> (B, d)`` L2-normalised rows.

    Build with :meth:`fit` (``pca``/``whiten``), :meth:`identity` (``none``) or
    :func:`fit_postprocess` (by mode name); persist with :meth:`save` and :meth:`load`.
    """

    def __init__(
        self,
        mode: str,
        mean: torch.Tensor,
        projection: torch.Tensor | None,
        eigenvalues: torch.Tensor | None,
        *,
        shrinkage: float = 0.0,
        eps: float = DEFAULT_EPS,
    ) -> None:
        POSTPROCESS_MODES.get(mode)  # an unknown mode lists the valid ones
        if (projection is None) != (mode == "none"):
            raise ValueError(
                f"mode {mode!r} {'needs' if mode != 'none' else 'takes no'} projection"
            )
        if projection is not None and (
            projection.ndim != 2
            or projection.shape[0] != mean.shape[0]
            or eigenvalues is None
            or eigenvalues.shape != (projection.shape[1],)
        ):
            raise ValueError(
                f"inconsistent whitening state: mean {tuple(mean.shape)}, projection "
                f"{tuple(projection.shape)}, eigenvalues "
                f"{None if eigenvalues is None else tuple(eigenvalues.shape)}"
            )
        self.mode = mode
        # contiguous float32, so a saved and reloaded copy computes bit for bit the same
        self.mean = mean.float().contiguous()  # (D,)
        self.projection = None if projection is None else projection.float().contiguous()  # (D, d)
        self.eigenvalues = None if eigenvalues is None else eigenvalues.float().contiguous()
        self.shrinkage = float(shrinkage)
        self.eps = float(eps)

    @classmethod
    def fit(
        cls,
        gallery: Any,
        *,
        dim: int | None = None,
        whiten: bool = True,
        shrinkage: float = 0.0,
        eps: float = DEFAULT_EPS,
    ) -> PCAWhitening:
        """Fit PCA (``whiten=False``) or PCA whitening on ``gallery (N, D)``.

        ``dim`` (default: all) is capped at the rank of the centred gallery (at most
        ``N - 1``), with a warning when a larger ``dim`` was asked for. The whitening
        scale of eigenvalue ``l`` is ``1 / sqrt((1 - s) l + s mean(l) + eps max(l))``.
        """
        x = _as_matrix(gallery, "gallery")  # (N, D)
        n, d = x.shape
        if n < 2:
            raise ValueError(f"fitting PCA needs at least 2 gallery items, got {n}")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive integer or None, got {dim!r}")
        mean = x.double().mean(dim=0)  # (D,)
        vals, vecs = _principal_axes(x, mean)
        rank = _numerical_rank(vals, n, d)
        if rank == 0:
            raise ValueError("the gallery has no variance (all rows are equal): nothing to fit")
        if dim is not None and dim > rank:
            warnings.warn(
                f"PCA dim {dim} exceeds the rank of the gallery ({rank}); using {rank}",
                stacklevel=2,
            )
        keep = min(dim or rank, rank)
        if whiten and keep >= n - 1:
            warnings.warn(
                f"whitening all {keep} directions of {n} items makes every pair of gallery "
                "items equally similar; pass a smaller dim (or more items)",
                stacklevel=2,
            )
        vals, vecs = vals[:keep], vecs[:, :keep]  # (d,), (D, d)
        projection = vecs
        if whiten:
            shrunk = (1 - shrinkage) * vals + shrinkage * vals.mean() + eps * vals[0]
            projection = vecs / shrunk.sqrt()  # (D, d): unit variance per direction
        mode = "whiten" if whiten else "pca"
        return cls(mode, mean, projection, vals, shrinkage=shrinkage, eps=eps)

    @classmethod
    def identity(cls, dim: int) -> PCAWhitening:
        """The ``none`` mode for ``dim``-wide embeddings: L2 normalisation only."""
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        return cls("none", torch.zeros(dim), None, None)

    @property
    def input_dim(self) -> int:
        """``D``: the width of the embeddings this was fitted on."""
        return int(self.mean.shape[0])

    @property
    def output_dim(self) -> int:
        """``d``: the width of transformed embeddings."""
        return self.input_dim if self.projection is None else int(self.projection.shape[1])

    def transform(self, x: Any, *, normalize: bool = True) -> torch.Tensor:
        """``(B, D) -> (B, d)`` float32, L2-normalised rows unless ``normalize=False``."""
        t = _as_matrix(x, "embeddings").float()  # (B, D)
        if t.shape[1] != self.input_dim:
            raise ValueError(
                f"embeddings have dimension {t.shape[1]}, the {self.mode} post-processor "
                f"was fitted on {self.input_dim}"
            )
        if self.projection is not None:
            t = (t - self.mean) @ self.projection  # (B, d)
        return torch.nn.functional.normalize(t, dim=1) if normalize else t

    __call__ = transform

    def state_dict(self) -> dict[str, Any]:
        """Tensors ``mean``/``projection``/``eigenvalues`` plus ``mode``, ``shrinkage``, ``eps``."""
        state: dict[str, Any] = {
            "mode": self.mode,
            "shrinkage": self.shrinkage,
            "eps": self.eps,
            "mean": self.mean.clone(),
        }
        if self.projection is not None:
            state["projection"] = self.projection.clone()
            state["eigenvalues"] = self.eigenvalues.clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PCAWhitening:
        """Rebuild from :meth:`state_dict` output; a missing key is a ``ValueError``."""
        missing = [k for k in ("mode", "mean") if k not in state]
        if state.get("mode") not in (None, "none"):
            missing += [k for k in ("projection", "eigenvalues") if k not in state]
        if missing:
            raise ValueError(f"whitening state lacks {missing}")
        return cls(
            str(state["mode"]),
            torch.as_tensor(state["mean"]),
            None if state["mode"] == "none" else torch.as_tensor(state["projection"]),
            None if state["mode"] == "none" else torch.as_tensor(state["eigenvalues"]),
            shrinkage=float(state.get("shrinkage", 0.0)),
            eps=float(state.get("eps", DEFAULT_EPS)),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state as safetensors (atomically); a folder gets ``whitening.safetensors``."""
        from fashion_retrieval.io_utils import atomic_save_file

        path = Path(path)
        if path.is_dir():
            path = path / WHITENING_FILE
        state = self.state_dict()
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        meta = {k: str(v) for k, v in state.items() if not isinstance(v, torch.Tensor)}
        return atomic_save_file(tensors, path, metadata={"format": FORMAT, **meta})

    @classmethod
    def load(cls, path: str | os.PathLike) -> PCAWhitening:
        """Read a file written by :meth:`save` (or a folder holding one); errors name the file."""
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            path = path / WHITENING_FILE
        if not path.is_file():
            raise ValueError(f"{path}: missing whitening file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state: dict[str, Any] = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own error types for corrupt files
            raise ValueError(f"{path}: unreadable whitening file ({err})") from err
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a whitening file (format {meta.get('format')!r})")
        state.update({k: meta[k] for k in ("mode", "shrinkage", "eps") if k in meta})
        try:
            return cls.from_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: mode, input/output dims, shrinkage, eps."""
        return {
            "mode": self.mode,
            "input_dim": self.input_dim,
            "dim": self.output_dim,
            "shrinkage": self.shrinkage,
            "eps": self.eps,
        }

    def __repr__(self) -> str:
        return f"PCAWhitening(mode={self.mode!r}, {self.input_dim} -> {self.output_dim})"


@POSTPROCESS_MODES.register("none")
def _fit_none(gallery: Any, **_: Any) -> PCAWhitening:
    """L2 normalisation only (nothing fitted)."""
    return PCAWhitening.identity(_as_matrix(gallery, "gallery").shape[1])


@POSTPROCESS_MODES.register("pca")
def _fit_pca(gallery: Any, *, dim: int | None = None, **_: Any) -> PCAWhitening:
    """Centre and project on the top ``dim`` principal directions."""
    return PCAWhitening.fit(gallery, dim=dim, whiten=False)


@POSTPROCESS_MODES.register("whiten")
def _fit_whiten(
    gallery: Any,
    *,
    dim: int | None = None,
    shrinkage: float = 0.0,
    eps: float = DEFAULT_EPS,
    **_: Any,
) -> PCAWhitening:
    """PCA whitening with eigenvalue shrinkage."""
    return PCAWhitening.fit(gallery, dim=dim, whiten=True, shrinkage=shrinkage, eps=eps)


def fit_postprocess(
    mode: str,
    gallery: Any,
    *,
    dim: int | None = None,
    shrinkage: float = 0.0,
    eps: float = DEFAULT_EPS,
) -> PCAWhitening:
    """Fit the post-processor named ``mode`` ("none", "pca", "whiten") on ``gallery (N, D)``."""
    return POSTPROCESS_MODES.get(mode)(gallery, dim=dim, shrinkage=shrinkage, eps=eps)
