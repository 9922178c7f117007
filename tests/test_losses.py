"""Losses against straightforward loop-based reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fashion_retrieval.losses import (
    LOSSES,
    batch_classification_loss,
    cmpm_loss,
    correlation,
    correlation_loss,
    correlational_objective,
    reconstruction_loss,
    soft_triplet_loss,
    symmetric_infonce,
)


def _pair(b: int = 5, d: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


def _ce_row(logits: list[float], label: int) -> float:
    m = max(logits)
    return -(logits[label] - m - math.log(sum(math.exp(v - m) for v in logits)))


def test_batch_classification_matches_reference() -> None:
    q, t = _pair()
    scale = 3.0
    ref = 0.0
    for i in range(len(q)):
        logits = [scale * float(q[i] @ t[j]) for j in range(len(t))]
        ref += _ce_row(logits, i)
    ref /= len(q)
    assert batch_classification_loss(q, t, scale=scale).item() == pytest.approx(ref, rel=1e-6)


def test_batch_classification_rewards_matching_pairs() -> None:
    q, _ = _pair()
    q = F.normalize(q, dim=1)
    assert batch_classification_loss(q, q, 10.0) < batch_classification_loss(q, q.roll(1, 0), 10.0)


def test_soft_triplet_matches_reference() -> None:
    q, t = _pair(4, 3)
    terms = []
    for i in range(4):
        d_pos = float(((q[i] - t[i]) ** 2).sum())
        for j in range(4):
            if j != i:
                d_neg = float(((q[i] - t[j]) ** 2).sum())
                terms.append(math.log1p(math.exp(d_pos - d_neg)))
    ref = sum(terms) / len(terms)
    assert soft_triplet_loss(q, t).item() == pytest.approx(ref, rel=1e-5)


def test_symmetric_infonce_matches_reference() -> None:
    a, b = _pair(6, 4, seed=1)
    tau = 0.5
    sims = [[float(a[i] @ b[j]) / tau for j in range(6)] for i in range(6)]
    a2b = sum(_ce_row(sims[i], i) for i in range(6)) / 6
    b2a = sum(_ce_row([sims[j][i] for j in range(6)], i) for i in range(6)) / 6
    assert symmetric_infonce(a, b, temperature=tau).item() == pytest.approx((a2b + b2a) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        symmetric_infonce(a, b, temperature=0.0)


def _cmpm_direction(x: torch.Tensor, z: torch.Tensor, labels: list[int], eps: float) -> float:
    total = 0.0
    n = len(x)
    for i in range(n):
        proj = [float(x[i] @ (z[j] / z[j].norm())) for j in range(n)]
        m = max(proj)
        denom = sum(math.exp(v - m) for v in proj)
        p = [math.exp(v - m) / denom for v in proj]
        same = [1.0 if labels[j] == labels[i] else 0.0 for j in range(n)]
        q = [s / sum(same) for s in same]
        total += sum(p[j] * (math.log(p[j]) - math.log(q[j] + eps)) for j in range(n))
    return total / n


def test_cmpm_matches_reference_with_shared_labels() -> None:
    img, txt = _pair(5, 3, seed=2)
    labels = [0, 1, 0, 2, 1]
    ref = _cmpm_direction(img, txt, labels, 1e-8) + _cmpm_direction(txt, img, labels, 1e-8)
    got = cmpm_loss(img, txt, torch.tensor(labels))
    assert got.item() == pytest.approx(ref, rel=1e-5)
    # Without labels each pair is its own identity.
    ref_id = _cmpm_direction(img, txt, list(range(5)), 1e-8) + _cmpm_direction(txt, img, list(range(5)), 1e-8)
    assert cmpm_loss(img, txt).item() == pytest.approx(ref_id, rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        cmpm_loss(img, txt, torch.tensor([0, 1]))


def test_correlation_and_reconstruction() -> None:
    a, b = _pair(8, 3, seed=3)
    ref = sum(
        float(torch.corrcoef(torch.stack([a[:, d], b[:, d]]))[0, 1]) for d in range(3)
    ) / 3
    assert correlation(a, b).item() == pytest.approx(ref, rel=1e-4)
    assert correlation_loss(a, a).item() == pytest.approx(-1.0, abs=1e-4)
    rec = reconstruction_loss([a, b], [b, b])
    assert rec.item() == pytest.approx(float(((a - b) ** 2).mean()), rel=1e-6)
    obj = correlational_objective(a, b, [a], [b], corr_weight=2.0)
    assert obj.item() == pytest.approx(float(((a - b) ** 2).mean()) - 2 * ref, rel=1e-4)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss([a], [a[:, :2]])


def test_registry_and_bad_shapes() -> None:
    q, t = _pair()
    labels, scale = torch.arange(len(q)), torch.tensor(2.0)
    assert torch.equal(LOSSES.get("soft_triplet").pair(q, t, labels, scale), soft_triplet_loss(q, t))
    assert torch.equal(LOSSES.get("symmetric_infonce").pair(q, t, labels, scale), symmetric_infonce(q, t, 0.5))
    assert LOSSES.get("correlational").pair is None  # computed by the crossmodal objective, with decoders
    with pytest.raises(ValueError, match="batch_classification"):
        LOSSES.get("nope")
    q, t = _pair()
    with pytest.raises(ValueError, match="batch sizes"):
        soft_triplet_loss(q, t[:3])
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        symmetric_infonce(q[0], t[0])


def test_losses_have_gradients() -> None:
    q, t = _pair()
    q.requires_grad_(True)
    for fn in (batch_classification_loss, soft_triplet_loss, symmetric_infonce, cmpm_loss):
        q.grad = None
        fn(q, t).backward()
        assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
