"""The relevance term (training/relevance.py, losses.relevant_mass_loss), against brute force."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fashion_retrieval.losses import relevant_mass_loss
from fashion_retrieval.training.relevance import Relevance, RelevanceBank


def _items(n: int = 120, seed: int = 0) -> list[SimpleNamespace]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cat = rng.choice(["dress", "skirt", "shirt"])
        names = ["color", "pattern"] + (["sleeve"] if cat != "skirt" else ["length"])
        out.append(SimpleNamespace(id=f"i{i}", category=cat,
                                   attributes={a: rng.choice(["x", "y", "z"]) for a in names}))
    return out


def _answers(item, source, target) -> bool:
    """Brute force: the target's type, and each value on which source and target differ."""
    if item.category != target.category:
        return False
    if source is None:
        return True
    return all(item.attributes.get(a) == v for a, v in target.attributes.items() if source.attributes.get(a) != v)


def test_mask_matches_brute_force() -> None:
    items = _items()
    rel = Relevance(items)
    rng = random.Random(1)
    sources = [rng.choice(items).id for _ in range(15)] + [None]
    targets = [rng.choice(items).id for _ in range(16)]
    mask = rel.mask(sources, targets)
    by_id = {it.id: it for it in items}
    assert mask.shape == (16, len(items)) and mask.dtype == torch.bool
    for i, (s, t) in enumerate(zip(sources, targets, strict=True)):
        want = [_answers(it, by_id.get(s), by_id[t]) for it in items]
        assert mask[i].tolist() == want
        assert mask[i, rel.rows[t]]  # a target always answers its own request


def test_mask_asks_only_what_changes() -> None:
    items = [SimpleNamespace(id="a", category="dress", attributes={"color": "blue", "pattern": "striped"}),
             SimpleNamespace(id="b", category="dress", attributes={"color": "red", "pattern": "striped"}),
             SimpleNamespace(id="c", category="dress", attributes={"color": "red", "pattern": "solid"}),
             SimpleNamespace(id="d", category="skirt", attributes={"color": "red", "pattern": "striped"})]
    mask = Relevance(items).mask(["a"], ["b"])  # "this, but red": red dresses, striped or not; not the skirt
    assert mask.tolist() == [[False, True, True, False]]


def test_relevance_needs_types_or_attributes() -> None:
    with pytest.raises(ValueError, match="garment type"):
        Relevance([SimpleNamespace(id="a", category=None, attributes={})])
    with pytest.raises(ValueError, match="every item answers every request"):
        Relevance([SimpleNamespace(id=str(i), category="dress", attributes={}) for i in range(3)])


def test_relevant_mass_loss_matches_brute_force() -> None:
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    c = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
    relevant = torch.rand(4, 10) < 0.3
    relevant[torch.arange(4), torch.arange(4)] = True
    got = relevant_mass_loss(q, c, relevant, scale=5.0)
    want = 0.0
    for i in range(4):
        e = [math.exp(5.0 * float(q[i] @ c[j])) for j in range(10)]
        want += -math.log(sum(x for x, r in zip(e, relevant[i].tolist(), strict=True) if r) / sum(e))
    assert got.item() == pytest.approx(want / 4, rel=1e-5)
    assert relevant_mass_loss(q, c, torch.ones(4, 10, dtype=torch.bool), 5.0).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least one candidate"):
        relevant_mass_loss(q, c, torch.zeros(4, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool mask"):
        relevant_mass_loss(q, c, torch.ones(4, 9, dtype=torch.bool))


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 4)
        self.scale = self.logit_scale = torch.tensor(10.0)
        self.calls = 0

    def encode_target(self, image_features: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert not self.training  # the bank is computed in eval mode
        return torch.nn.functional.normalize(self.proj(image_features), dim=1)


def test_bank_refreshes_on_schedule_and_restores() -> None:
    items = _items(30)
    model = _Model().train()
    bank = RelevanceBank(Relevance(items), torch.randn(30, 6), refresh=3)
    q = torch.nn.functional.normalize(torch.randn(2, 4), dim=1).requires_grad_()
    for step in range(7):
        bank.loss(model, q, [items[0].id, items[1].id], [items[2].id, items[3].id], step).backward()
    assert model.training and model.calls == 3  # steps 0, 3 and 6
    assert q.grad is not None and model.proj.weight.grad is None  # the bank takes no gradient
    state = bank.state_dict()
    again = RelevanceBank(Relevance(items), bank.features, refresh=3)
    again.load_state_dict(state)
    assert again.at == 6 and torch.equal(again.embeddings, bank.embeddings)
    with pytest.raises(ValueError, match="differ"):
        RelevanceBank(Relevance(items), torch.randn(29, 6))


def test_training_with_the_relevance_term_resumes_exactly(tmp_path: Path) -> None:
    from test_training import _weights, make_tiny_fashioniq, tiny_config

    from fashion_retrieval.training import train

    root = make_tiny_fashioniq(tmp_path / "data")
    kw = dict(max_steps=8, save_every=4, relevance_weight=1.0, relevance_refresh=3)
    full = train(tiny_config(root, tmp_path / "full", **kw))
    train(tiny_config(root, tmp_path / "cut", **{**kw, "max_steps": 4}))
    resumed = train(tiny_config(root, tmp_path / "cut", resume="latest", **kw))
    plain = train(tiny_config(root, tmp_path / "plain", max_steps=8, save_every=4))
    a, b, c = _weights(full), _weights(resumed), _weights(plain)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the term changes training


def test_relevance_weight_is_validated() -> None:
    from fashion_retrieval.training.config import TrainConfig

    with pytest.raises(ValueError, match="relevance_weight must be >= 0"):
        TrainConfig(relevance_weight=-1.0)
    with pytest.raises(ValueError, match="cached backbone features"):
        TrainConfig(relevance_weight=1.0, cache_features=False)
    with pytest.raises(ValueError, match="cached backbone features"):
        TrainConfig(relevance_weight=1.0, task="crossmodal")


def test_the_tuning_rule_keeps_r1_and_takes_the_largest_weight() -> None:
    from fashion_retrieval.training.tune_relevance import choose, markdown_table

    def row(r1: float) -> dict:
        return {"one_gallery": {"R@1": r1}, "control": {"both_of_ceiling": 50.0}, "phrasing": {"heldout": {"R@10": 90.0}}}

    results = {"a": {0.0: row(50.0), 0.5: row(52.0), 1.0: row(50.0), 1.5: row(49.9)},  # 1.0: R@1 kept exactly
               "b": {0.0: row(60.0), 0.5: row(59.0), 1.0: row(58.0), 1.5: row(40.0)},  # none keeps it: 0
               "c": {0.0: row(5.0), 0.5: row(30.0), 1.5: row(31.0)}}  # a missing weight is skipped
    chosen = choose(results)
    assert chosen == {"a": 1.0, "b": 0.0, "c": 1.5}
    table = markdown_table({"grid": [0.5, 1.0, 1.5], "steps": 10, "seed": 0, "results": results, "chosen": chosen})
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 11 and sum("**" in line for line in rows) == 3
    assert "| a | **1** | 50.0 |" in table and "| b | **0** | 60.0 |" in table


def test_the_weights_in_use_follow_the_recorded_tuning() -> None:
    """results/relevance_tuning.json (the tuning command's output) chose the weights in use."""
    import json

    from fashion_retrieval.training.tune_relevance import choose, relevance_weights

    report = json.loads((Path(__file__).resolve().parents[1] / "results" / "relevance_tuning.json").read_text())
    results = {m: {float(w): r for w, r in by.items()} for m, by in report["results"].items()}
    assert choose(results) == relevance_weights(list(results))
