"""Refinement sessions with a simulated shopper (fashion_retrieval/evaluation/sessions/):
the simulator against a brute-force re-implementation on random embeddings, the figures, the
JSON's shape, the random baseline against its analytic expectation, the CLI and the README
block. Tiny data only: no embedded default is built."""

from __future__ import annotations

import json
import zlib
from math import comb

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fashion_retrieval.data.records import Item, RetrievalDataset
from fashion_retrieval.data.synthetic.attributes import attribute_values, caption_of, get_category
from fashion_retrieval.data.synthetic.phrasing import change_request, multi_change_request
from fashion_retrieval.evaluation.sessions import (
    POLICIES,
    RANDOM,
    PolicyRanker,
    RandomRanker,
    SessionReport,
    SessionSpec,
    draw_sessions,
    markdown_table,
    measure_sessions,
    run_sessions,
    summarise,
)
from fashion_retrieval.evaluation.sessions.simulate import SessionLog, Turn
from fashion_retrieval.models.history import session_query


def _catalogue(n_products: int = 60, views: int = 2, values: int = 2, seed: int = 0) -> RetrievalDataset:
    """Dresses (5 attributes) and shirts (4), each attribute drawn from its first ``values``
    values so that near and exact matches exist; ``views`` images per product."""
    rng = np.random.default_rng(seed)
    items = []
    for p in range(n_products):
        cat = ("dress", "shirt")[p % 2]
        attrs = {n: vs[int(rng.integers(min(values, len(vs))))] for n, vs in attribute_values(cat).items()}
        items += [Item(f"{p}_{v}", f"/x/{p}_{v}.png", caption_of(cat, attrs), cat, attrs) for v in range(views)]
    return RetrievalDataset("synthetic", "val", "/x", items, [], "synthetic")


class HashSource:
    """An EmbeddingSource: random unit gallery vectors; a query is its picture's vector plus a
    vector hashed from its words (stable across processes)."""

    def __init__(self, dataset: RetrievalDataset, dim: int = 12, seed: int = 0, words: float = 0.8) -> None:
        g = torch.Generator().manual_seed(seed)
        self.gallery = F.normalize(torch.randn(len(dataset.items), dim, generator=g), dim=1)
        self.rows = {it.id: i for i, it in enumerate(dataset.items)}
        self.dim, self.words = dim, words

    def _text(self, text: str) -> torch.Tensor:
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(text.encode())))

    def item_embeddings(self) -> torch.Tensor:
        return self.gallery

    def query_embeddings(self, triplets) -> torch.Tensor:
        q = [self.gallery[self.rows[t.source]] + self.words * self._text(t.text) for t in triplets]
        return F.normalize(torch.stack(q), dim=1)


# ----------------------------------------------------------------------------- brute force


def _distance(item: Item, target: Item) -> int:
    if item.category != target.category:
        return 99
    return sum(item.attributes.get(a) != v for a, v in target.attributes.items())


def _ask(picture: Item, target: Item, rng: np.random.Generator, asks: int, phrasing: str) -> str:
    names = [a for a, v in target.attributes.items() if picture.attributes.get(a) != v]
    chosen = sorted(int(i) for i in rng.choice(len(names), size=min(asks, len(names)), replace=False))
    noun = get_category(target.category).noun
    if len(chosen) == 1:
        return change_request(names[chosen[0]], target.attributes[names[chosen[0]]], noun, rng, phrasing)
    return multi_change_request(noun, {names[i]: target.attributes[names[i]] for i in chosen}, rng, phrasing)


def _brute_session(source: HashSource, items: list[Item], s, spec: SessionSpec, policy: str) -> list[tuple]:
    """One session played the slow way: (picture, text, hits, rank, success) per turn."""
    from fashion_retrieval.data.records import Triplet

    target = items[s.target]
    rng = np.random.default_rng([spec.seed, 25, s.index])
    picture, requests, gone, out = s.start, [_ask(items[s.start], target, rng, spec.asks, spec.phrasing)], {s.start}, []
    for _ in range(spec.turns):
        rows = source.query_embeddings([Triplet(items[picture].id, None, t, items[picture].category) for t in requests])
        query = session_query(policy, rows)
        scores = {j: float(query @ source.gallery[j]) for j in range(len(items)) if j not in gone}
        ranked = sorted(scores, key=lambda j: -scores[j])
        top = ranked[: spec.k]
        rank = 1 + sum(1 for j in scores if scores[j] > scores[s.target])
        success = any(items[j].caption == target.caption for j in top)
        out.append((picture, requests[-1], tuple(top), rank, success))
        if success:
            break
        gone |= set(top)
        best = min(_distance(items[j], target) for j in top)
        picture = next(j for j in top if _distance(items[j], target) == best)
        requests.append(_ask(items[picture], target, rng, spec.asks, spec.phrasing))
    return out


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("asks", [1, 2])
def test_sessions_match_a_brute_force_shopper(policy, asks):
    ds = _catalogue()
    source = HashSource(ds)
    spec = SessionSpec(k=4, turns=5, start_distance=5, sessions=25, asks=asks, seed=2)
    sessions = draw_sessions(ds.items, spec)
    logs = run_sessions(PolicyRanker(source, ds.items, policy), ds.items, sessions, spec)
    assert len(logs) == 25
    for log in logs:
        got = [(t.picture, t.text, t.hits, t.rank, t.success) for t in log.turns]
        assert got == _brute_session(source, ds.items, log.session, spec, policy)
    assert any(len(log.turns) > 1 for log in logs) and any(log.found_turn for log in logs)


def test_what_the_shopper_sees_picks_and_asks():
    ds = _catalogue()
    spec = SessionSpec(k=5, turns=5, start_distance=5, sessions=30, seed=1)
    logs = run_sessions(PolicyRanker(HashSource(ds, seed=4), ds.items, "history"), ds.items,
                        draw_sessions(ds.items, spec), spec)
    for log in logs:
        target, seen = ds.items[log.session.target], {log.session.start}
        for t, nxt in zip(log.turns, [*log.turns[1:], None], strict=True):
            assert len(t.hits) == spec.k and not seen & set(t.hits)  # nothing shown twice, no picture again
            assert t.success == any(ds.items[j].caption == target.caption for j in t.hits)
            seen |= set(t.hits)
            if nxt is not None:
                assert not t.success and nxt.picture in t.hits
                assert _distance(ds.items[nxt.picture], target) == min(_distance(ds.items[j], target) for j in t.hits)
        assert all(not t.success for t in log.turns[:-1])  # a found target ends the session


def test_sessions_start_the_asked_distance_away_or_the_farthest_there_is():
    ds = _catalogue(values=3)
    for distance in (1, 3, 5):
        spec = SessionSpec(start_distance=distance, sessions=80, seed=distance)
        for s in draw_sessions(ds.items, spec):
            start, target = ds.items[s.start], ds.items[s.target]
            assert start.category == target.category and _distance(start, target) == s.distance
            if s.distance < distance:  # the fall-back: nothing that far of that type
                assert all(_distance(it, target) < distance for it in ds.items if it.category == target.category)
            else:
                assert s.distance == distance
    assert draw_sessions(ds.items, spec) == draw_sessions(ds.items, spec)  # seeded


def test_random_baseline_is_near_its_analytic_expectation():
    ds = _catalogue(n_products=150, views=2, values=3)
    spec = SessionSpec(k=8, turns=5, start_distance=3, sessions=1500, seed=5)
    sessions = draw_sessions(ds.items, spec)
    logs = run_sessions(RandomRanker(len(ds.items), seed=1), ds.items, sessions, spec)
    got = summarise(logs, spec.turns)["success"]
    n = len(ds.items)
    expected = np.zeros(spec.turns)
    for s in sessions:
        h = sum(it.caption == ds.items[s.target].caption for it in ds.items)  # the start never matches
        miss = 1.0
        for t in range(spec.turns):
            left = n - 1 - t * spec.k  # the start and the earlier turns' results left out
            miss *= comb(left - h, spec.k) / comb(left, spec.k)
            expected[t] += 100 * (1 - miss) / len(sessions)
    assert expected[-1] > 15  # a test with something to see
    assert np.abs(np.array(got) - expected).max() < 3.0, (got, expected.round(2))


def test_summary_counts_misses_as_one_more_turn_and_carries_the_found_rank():
    def log(*turns):
        return SessionLog(None, [Turn(0, "x", (), rank, ok) for rank, ok in turns])

    logs = [log((9, False), (1, True)), log((5, False), (7, False), (3, False)), log((2, True))]
    out = summarise(logs, turns=3)
    assert out["success"] == [33.33, 66.67, 66.67]
    assert out["mean_turns"] == pytest.approx((2 + 4 + 1) / 3, abs=1e-3)
    assert out["target_rank"] == [5.0, 2.0, 2.0]  # medians of (9, 5, 2), (1, 7, 2), (1, 3, 2)


def test_the_json_has_the_agreed_shape():
    ds = _catalogue()
    spec = SessionSpec(k=8, turns=5, sessions=12, seed=0)
    sources = {"tirg": HashSource(ds, seed=1), "image_only": HashSource(ds, seed=2, words=0.0)}
    rep = json.loads(json.dumps(measure_sessions(sources, ds, spec)))
    assert {"k": 8, "turns": 5, "start_distance": 5, "sessions": 12}.items() <= rep.items()
    assert list(rep["models"]) == ["tirg", "image_only", RANDOM]
    for per in rep["models"].values():
        assert list(per) == list(POLICIES)
        for r in per.values():
            assert set(r) == {"success", "mean_turns", "target_rank"} and len(r["success"]) == 5
            assert r["success"] == sorted(r["success"]) and 0 <= r["success"][0] and r["success"][-1] <= 100
            assert 1 <= r["mean_turns"] <= 6 and len(r["target_rank"]) == 5
    assert rep["models"]["image_only"]["history"] == rep["models"]["image_only"]["last_turn"]  # one row repeated
    named = set()
    for per in rep["replays"].values():
        for r in per.values():
            assert {"target", "start", "turns"} == set(r) and r["turns"]
            named |= {r["target"], r["start"]}
            for t in r["turns"]:
                assert set(t) == {"picture", "text", "hits", "target_rank", "success"} and len(t["hits"]) == 8
                named |= {t["picture"], *t["hits"]}
    assert set(rep["paths"]) == named and all(p.startswith("/x/") for p in rep["paths"].values())
    assert rep["replays"]["tirg"]["history"]["turns"][0]["text"] == rep["replays"]["tirg"]["last_turn"]["turns"][0]["text"]
    assert sum(rep["start_distances"].values()) == 12
    text = markdown_table([rep])
    assert "| tirg | history |" in text and "| random | (any) |" in text and "points" in text


def test_a_sweep_runs_named_functions_and_the_policy_names_are_checked():
    from functools import partial

    from fashion_retrieval.models.history import history

    ds = _catalogue()
    report = SessionReport(ds, SessionSpec(sessions=8))
    got = report.add("tirg", HashSource(ds), {"history@1": partial(history, earlier_weight=1.0), "last_turn": "last_turn"})
    assert list(got) == ["history@1", "last_turn"]
    with pytest.raises(ValueError, match="last_turn"):
        report.add("tirg", HashSource(ds), ["nope"])


def test_cli_on_a_tiny_checkpoint_writes_json_and_readme_block(tmp_path, capsys):
    from _demo_data import write_tiny_checkpoint

    from fashion_retrieval.data.synthetic import load_synthetic
    from fashion_retrieval.evaluation.sessions.__main__ import main

    root = tmp_path / "syn"
    load_synthetic(root=root, split="train", preset="easy", products=16, seed=3, workers=1)
    ck = write_tiny_checkpoint(tmp_path / "tiny_tirg")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- sessions:start -->\nold\n<!-- sessions:end -->\n\ntail\n")
    out = tmp_path / "s.json"
    args = ["--json", str(out), "--checkpoints", str(ck), "--gallery", str(root), "--split", "train",
            "--sessions", "6", "--start-distance", "4", "--readme", str(readme)]
    assert main(args) == 0
    rep = json.loads(out.read_text())
    assert rep["start_distance"] == 4 and rep["sessions"] == 6 and list(rep["models"]) == ["tiny_tirg", RANDOM]
    text = readme.read_text()
    assert "old" not in text and text.endswith("tail\n") and text.count("<!-- sessions:start -->") == 1
    assert "**Start 3 attributes away**" in text and "**Start 5 attributes away**" in text
    assert "Reproduce: `python -m fashion_retrieval.evaluation.sessions --json" in text
    # Choosing a setting in the held-out sentences is refused.
    assert main(["--json", str(out), "--checkpoints", str(ck), "--gallery", str(root), "--split", "train",
                 "--earlier-weights", "0.5"]) == 2
    assert "never in the held-out sentences" in capsys.readouterr().err
