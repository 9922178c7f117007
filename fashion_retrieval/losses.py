"""Retrieval losses: plain functions of embeddings, plus ``LOSSES``, the training losses by name.

Every loss takes a batch of paired embeddings, row ``i`` of one side matching row ``i`` of
the other, and treats the other rows of the batch as negatives. ``LOSSES`` is the one
registry of the names a ``TrainConfig.loss`` may take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fashion_retrieval.registry import Registry

# (query (B, D), target (B, D), labels (B,), scale ()) -> loss. ``scale`` is the model's
# learnable similarity scale (1 / temperature); ``labels`` are identity labels.
PairLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    """A training loss under the name configs use.

    ``pair`` scores a batch of (query, target) embedding pairs. None marks the correlational
    network (Chandar et al. 2016): decoders rebuild each view's input from either code,
    trained with ``correlational_objective``, which the task's objective computes itself.
    ``tasks`` are the tasks it applies to (None: every task).
    """

    name: str
    pair: PairLoss | None
    tasks: tuple[str, ...] | None = None
    description: str = ""

    def check_task(self, task: str) -> None:
        """ValueError when this loss does not apply to ``task``."""
        if self.tasks is not None and task not in self.tasks:
            raise ValueError(f"loss {self.name!r} is for task {' or '.join(map(repr, self.tasks))}, not {task!r}")


LOSSES: Registry[Loss] = Registry("loss")


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Raise a ValueError unless ``a`` and ``b`` are matching (B, D) batches with B >= 2."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{names[0]} and {names[1]} must be (B, D); got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} have different batch sizes: {a.shape[0]} vs {b.shape[0]}")
    if a.shape[0] < 2:
        raise ValueError("in-batch losses need a batch of at least 2 pairs (the others are the negatives)")


def batch_classification_loss(
    query: torch.Tensor, target: torch.Tensor, scale: float | torch.Tensor = 10.0
) -> torch.Tensor:
    """TIRG's default loss: each query classifies its own target among the batch's targets.

    ``query`` and ``target`` are (B, D); logits are ``scale * query @ target.T`` and the
    loss is the cross-entropy with the diagonal as the labels. With L2-normalised
    embeddings ``scale`` plays the part of TIRG's learnable normalisation scale.
    """
    _check_pair(query, target, ("query", "target"))
    logits = scale * query @ target.t()  # (B, B)
    labels = torch.arange(query.shape[0], device=query.device)
    return F.cross_entropy(logits.float(), labels)


def relevant_mass_loss(
    query: torch.Tensor, candidates: torch.Tensor, relevant: torch.Tensor, scale: float | torch.Tensor = 10.0
) -> torch.Tensor:
    """Minus the log of each query's softmax mass on the candidates relevant to it.

    ``query`` (B, D), ``candidates`` (N, D), ``relevant`` (B, N) bool: for query ``i``, the
    candidates that answer its request (at least its own target). The term ranks the
    relevant candidates above the rest as a whole and is indifferent to their order among
    themselves (the pair loss decides that); with every candidate relevant it is 0.
    """
    if query.dim() != 2 or candidates.dim() != 2 or query.shape[1] != candidates.shape[1]:
        raise ValueError(f"query (B, D) and candidates (N, D) must share D; got {tuple(query.shape)} "
                         f"and {tuple(candidates.shape)}")
    shape = (query.shape[0], candidates.shape[0])
    if relevant.shape != shape or relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a (B, N) = {shape} bool mask; got {tuple(relevant.shape)} {relevant.dtype}")
    if not bool(relevant.any(dim=1).all()):
        raise ValueError("relevant must mark at least one candidate per query (its own target)")
    logits = (scale * query @ candidates.t()).float()  # (B, N)
    inside = torch.logsumexp(logits.masked_fill(~relevant, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - inside).mean()


def soft_triplet_loss(query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft triplet loss over in-batch negatives: mean of ``log(1 + exp(d_pos - d_neg))``.

    Distances are squared Euclidean; for query ``i`` the positive is target ``i`` and every
    other target of the batch is a negative (TIRG's soft triplet variant).
    """
    _check_pair(query, target, ("query", "target"))
    dist = torch.cdist(query.float(), target.float()).pow(2)  # (B, B)
    d_pos = dist.diagonal().unsqueeze(1)  # (B, 1)
    off_diag = ~torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)
    margins = (d_pos - dist)[off_diag]  # (B * (B - 1),) d_pos - d_neg
    return F.softplus(margins).mean()


def symmetric_infonce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """CLIP's symmetric contrastive loss: the mean of the a->b and b->a InfoNCE losses.

    ``a`` and ``b`` are (B, D), normally L2-normalised; logits are ``a @ b.T / temperature``.
    """
    _check_pair(a, b, ("a", "b"))
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = (a @ b.t()).float() / temperature  # (B, B)
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def _projection_matching(x: torch.Tensor, z: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    """One direction of CMPM: KL(p || q) where p is the softmax of x projected on unit z."""
    proj = x @ F.normalize(z, dim=1).t()  # (B, B) scalar projection of x_i on z_j
    log_p = F.log_softmax(proj, dim=1)
    p = log_p.exp()
    return (p * (log_p - torch.log(q + eps))).sum(dim=1).mean()


def cmpm_loss(
    image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Cross-modal projection matching (Zhang & Lu, ECCV 2018), both directions summed.

    For image ``i`` the matching distribution ``p_i`` is the softmax over ``j`` of the
    projection of image ``i`` onto the normalised text ``j``; the loss is the KL divergence
    from the true distribution ``q_i`` (uniform over the texts with the same label). Texts
    to images likewise. ``labels`` (B,) are identity labels; None means each pair is its
    own identity.
    """
    _check_pair(image, text, ("image", "text"))
    if labels is None:
        labels = torch.arange(image.shape[0], device=image.device)
    if labels.shape != (image.shape[0],):
        raise ValueError(f"labels must be (B,) = ({image.shape[0]},); got {tuple(labels.shape)}")
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()  # (B, B)
    q = same / same.sum(dim=1, keepdim=True)
    image, text = image.float(), text.float()
    return _projection_matching(image, text, q, eps) + _projection_matching(text, image, q, eps)


def correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean over dimensions of the Pearson correlation between ``a[:, d]`` and ``b[:, d]``."""
    _check_pair(a, b, ("a", "b"))
    a_c = a.float() - a.float().mean(dim=0)  # (B, D) centred
    b_c = b.float() - b.float().mean(dim=0)
    cov = (a_c * b_c).sum(dim=0)  # (D,)
    norm = torch.sqrt((a_c.pow(2).sum(dim=0) + eps) * (b_c.pow(2).sum(dim=0) + eps))
    return (cov / norm).mean()


def correlation_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Negative mean per-dimension correlation of two views' codes (minimise to correlate)."""
    return -correlation(a, b)


def reconstruction_loss(
    reconstructions: list[torch.Tensor], targets: list[torch.Tensor]
) -> torch.Tensor:
    """Sum of mean squared errors between each reconstruction and its (B, D) target."""
    if len(reconstructions) != len(targets) or not targets:
        raise ValueError("reconstruction_loss needs as many targets as reconstructions (at least one)")
    total = reconstructions[0].new_zeros((), dtype=torch.float32)
    for rec, tgt in zip(reconstructions, targets, strict=True):
        if rec.shape != tgt.shape:
            raise ValueError(f"reconstruction shape {tuple(rec.shape)} != target shape {tuple(tgt.shape)}")
        total = total + F.mse_loss(rec.float(), tgt.float())
    return total


def correlational_objective(
    code_a: torch.Tensor,
    code_b: torch.Tensor,
    reconstructions: list[torch.Tensor],
    targets: list[torch.Tensor],
    corr_weight: float = 1.0,
) -> torch.Tensor:
    """Correlational network objective (Chandar et al. 2016): reconstruct, and correlate.

    ``code_a``/``code_b`` are the two views' (B, D) codes; ``reconstructions`` are the
    decoders' outputs (each view from each code) and ``targets`` what they should equal.
    """
    return reconstruction_loss(reconstructions, targets) + corr_weight * correlation_loss(code_a, code_b)


LOSSES.add("batch_classification", Loss(
    "batch_classification", lambda q, t, y, s: batch_classification_loss(q, t, s),
    description="TIRG's in-batch classification of each query's target",
))
LOSSES.add("soft_triplet", Loss(
    "soft_triplet", lambda q, t, y, s: soft_triplet_loss(q, t),
    description="soft triplet loss over in-batch negatives",
))
LOSSES.add("symmetric_infonce", Loss(
    "symmetric_infonce", lambda q, t, y, s: symmetric_infonce(q, t, 1.0 / s),
    description="CLIP's symmetric contrastive loss at temperature 1 / scale",
))
LOSSES.add("cmpm", Loss(
    "cmpm", lambda q, t, y, s: cmpm_loss(s * t, s * q, y),
    description="cross-modal projection matching with identity labels",
))
LOSSES.add("correlational", Loss(
    "correlational", None, tasks=("crossmodal",),
    description="correlational network: reconstruct both views from either code, and correlate the codes",
))
