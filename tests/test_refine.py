"""Refinement sessions in the serving layer (``serving/refine.py``) and the demo backend.

Real tiny models (tiny_cnn + LSTM, untrained) over the 12-image drawn catalogue: each step's
results are checked against ``Retriever.search_session`` called by hand with the requests so
far and the ids that model showed, not against the session code itself.
"""

from __future__ import annotations

import threading

import pytest
from _demo_data import tiny_model, write_tiny_fashioniq
from _photo_data import write_folder

from fashion_retrieval.demo.handlers import DemoBackend, session_markdown
from fashion_retrieval.search.query import CatalogueImage, QueryError
from fashion_retrieval.search.retriever import Retriever
from fashion_retrieval.serving.catalogue import Catalogue, open_catalogue
from fashion_retrieval.serving.refine import ENDED, RefinementSessions

NAMES = ("tirg", "concat", "image_only")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Catalogue:
    return open_catalogue(write_tiny_fashioniq(tmp_path_factory.mktemp("fiq")), log=lambda _: None)


@pytest.fixture(scope="module")
def models(catalogue):
    return {n: Retriever(tiny_model(n, seed=i), catalogue.items) for i, n in enumerate(NAMES)}


@pytest.fixture
def sessions(models, catalogue) -> RefinementSessions:
    return RefinementSessions(models, catalogue, max_k=10)


def _expected(models, catalogue, picture, requests, k, policy, shown, pictures):
    """Each model's hits computed by hand: the picture with every request so far, what that
    model showed and every picture picked left out."""
    image = CatalogueImage(picture, catalogue.by_id[picture].path)
    return {n: [h.id for h in models[n].search_session(image, requests, k, policy=policy,
                                                      exclude_ids=shown[n] | pictures)]
            for n in models}


def _ids(view):
    return {n: [h.id for h in hits] for n, hits in view.current.results.items()}


def _three_steps(sessions, models, catalogue, k=3, policy=None):
    """Three steps, each from the previous step's second tirg result; checks every step."""
    words = ["is red", "is striped", "is blue"]
    picture, session_id = catalogue.items[0].id, None
    shown = {n: set() for n in models}
    pictures: set[str] = set()
    for turn, w in enumerate(words, 1):
        view = sessions.refine(session_id, picture, w, k=k, policy=policy)
        pictures.add(picture)
        want = _expected(models, catalogue, picture, words[:turn], k, view.policy, shown, pictures)
        assert _ids(view) == want
        for n, ids in want.items():
            assert not set(ids) & shown[n] and not set(ids) & pictures  # nothing shown twice
            shown[n] |= set(ids)
        assert view.step == turn and view.requests() == words[:turn]
        session_id = view.id
        picture = sessions.result(view.id, "tirg", 1).id  # the shopper picks tirg's second result
    return view, shown


def test_each_step_is_the_picture_with_every_request_so_far_each_model_leaving_out_what_it_showed(
    sessions, models, catalogue
):
    view, shown = _three_steps(sessions, models, catalogue)
    assert view.policy == "history" and len(sessions) == 1
    assert [s.words for s in view.steps] == ["is red", "is striped", "is blue"]
    # one picture chain for every model: each step's picture is tirg's pick of the step before
    assert view.steps[1].picture == view.steps[0].results["tirg"][1].id
    assert all(set(s.results) == set(NAMES) for s in view.steps)
    assert {n: view.shown(n) for n in NAMES} == shown
    # each model's own exclusions: image_only may show what tirg showed (not what it showed itself)
    assert view.shown("image_only") != view.shown("tirg")
    assert sessions.get(view.id) == view and sessions.get("no such id") is None


def test_last_turn_policy_and_a_policy_changed_mid_session(sessions, models, catalogue):
    view, _ = _three_steps(sessions, models, catalogue, policy="last_turn")
    assert {s.policy for s in view.steps} == {"last_turn"}
    picture = view.current.results["concat"][0].id  # refine from another model's result
    after = sessions.refine(view.id, picture, "is green", models=["tirg"], policy="history")
    image = CatalogueImage(picture, catalogue.by_id[picture].path)
    want = models["tirg"].search_session(image, [*view.requests(), "is green"], 8, policy="history",
                                         exclude_ids=view.shown("tirg") | view.pictures() | {picture})
    assert _ids(after) == {"tirg": [h.id for h in want]}
    assert after.policy == "history" and after.current.policy == "history"


def test_back_to_a_step_restores_it_and_the_next_step_follows_from_there(sessions, models, catalogue):
    view, _ = _three_steps(sessions, models, catalogue)
    back = sessions.back(view.id, 2.0)  # a Gradio Number arrives as a float
    assert back.steps == view.steps[:2] and back.current == view.steps[1]
    assert sessions.get(view.id) == back  # kept on the server
    picture = back.current.results["image_only"][0].id
    again = sessions.refine(view.id, picture, "is black", k=3)
    shown = {n: back.shown(n) for n in NAMES}  # step 3's results are no longer left out
    want = _expected(models, catalogue, picture, ["is red", "is striped", "is black"], 3, "history",
                     shown, back.pictures() | {picture})
    assert again.step == 3 and _ids(again) == want
    assert sessions.back(view.id, 1).step == 1


def test_bad_input_is_a_sentence_a_shopper_can_read(sessions, models, catalogue):
    first = catalogue.items[0].id
    view = sessions.refine("", first, "is red", k=2)
    cases = [
        (lambda: sessions.refine(view.id, "no_such_item", "is red"), "There is no catalogue item 'no_such_item'"),
        (lambda: sessions.refine(view.id, "", "is red"), "Pick the next picture first"),
        (lambda: sessions.refine(view.id, None, "is red"), "Pick the next picture first"),
        (lambda: sessions.refine(view.id, first, "   "), "Say what should change"),
        (lambda: sessions.refine(view.id, first, None), "Say what should change"),
        (lambda: sessions.refine(view.id, first, "x" * 600), "keep it under 500"),
        (lambda: sessions.refine(view.id, first, "is red", k=0), "K must be a whole number from 1 to 10"),
        (lambda: sessions.refine(view.id, first, "is red", models="tirg, nope"), "Unknown model 'nope'"),
        (lambda: sessions.refine(view.id, first, "is red", policy="newest"), "Unknown history policy 'newest'"),
        (lambda: sessions.refine("stale-id", first, "is red"), ENDED),
        (lambda: sessions.back("stale-id", 1), ENDED),
        (lambda: sessions.result(view.id, "tirg", 5), "no longer shown"),
        (lambda: sessions.result("stale-id", "tirg", 0), "no longer shown"),
    ]
    for step in (0, 2, -1, 1.5, "two", None, True, float("nan")):
        cases.append((lambda step=step: sessions.back(view.id, step), "choose a step from 1 to 1"))
    for call, message in cases:
        with pytest.raises(QueryError, match=None) as info:
            call()
        assert message in str(info.value), str(info.value)
    assert sessions.get(view.id) == view and len(sessions) == 1  # nothing changed, nothing added


def test_sessions_are_bounded_least_recently_used_first(models, catalogue):
    sessions = RefinementSessions(models, catalogue, max_sessions=2, max_steps=2)
    pic = catalogue.items[0].id
    a, b = (sessions.refine(None, pic, "is red", models="image_only", k=1) for _ in range(2))
    assert sessions.get(a.id) is not None  # a is now the most recently used
    c = sessions.refine(None, pic, "is blue", models="image_only", k=1)
    assert len(sessions) == 2 and sessions.get(b.id) is None and sessions.get(c.id) is not None
    with pytest.raises(QueryError, match="has ended"):
        sessions.refine(b.id, pic, "is red")
    step2 = sessions.refine(a.id, sessions.result(a.id, "image_only", 0).id, "is green", k=1)
    with pytest.raises(QueryError, match="already has 2 steps"):
        sessions.refine(a.id, step2.current.results["image_only"][0].id, "is blue", k=1)


def test_concurrent_steps_of_one_session_are_taken_one_at_a_time(sessions, catalogue):
    view = sessions.refine(None, catalogue.items[0].id, "is red", k=1)
    pictures = [it.id for it in catalogue.items[1:7]]
    threads = [threading.Thread(target=sessions.refine, args=(view.id, p, "is blue"), kwargs={"k": 1})
               for p in pictures]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = sessions.get(view.id)
    assert final.step == 7 and sorted(s.picture for s in final.steps[1:]) == sorted(pictures)
    for n in NAMES:  # every step left out what the steps before it showed
        seen: set[str] = set()
        for s in final.steps:
            ids = {h.id for h in s.results[n]}
            assert not ids & seen
            seen |= ids


def test_a_photo_folder_catalogue_refines_by_item_id(tmp_path):
    write_folder(tmp_path / "shop", 30)
    catalogue = open_catalogue(tmp_path / "shop", log=lambda _: None)
    models = {"tirg": Retriever(tiny_model("tirg"), catalogue.items)}
    sessions = RefinementSessions(models, catalogue)
    view = sessions.refine(None, "tops/p004.png", "is red", k=4)
    view = sessions.refine(view.id, sessions.result(view.id, "tirg", 0).id, "is striped", k=4)
    want = _expected(models, catalogue, view.current.picture, ["is red", "is striped"], 4, "history",
                     {"tirg": {h.id for h in view.steps[0].results["tirg"]}}, view.pictures())
    assert _ids(view) == want and len(want["tirg"]) == 4


def test_demo_backend_starts_a_session_with_each_compose_search(models, catalogue, tmp_path):
    backend = DemoBackend(models, catalogue, max_k=10)
    t = catalogue.triplets[0]
    first = backend.compose(["tirg", "image_only"], catalogue.by_id[t.source].path, t.text, 4)
    search = [backend.search(n, catalogue.by_id[t.source].path, t.text, 4) for n in ("tirg", "image_only")]
    assert [o.rows for o in first.outcomes] == [o.rows for o in search]  # step 1 is the search
    assert first.session.current.picture == t.source and first.outcomes[0].truth is not None
    assert first.strip() == [(catalogue.by_id[t.source].path, f"1. {t.text}")]
    pick = first.outcomes[1].rows[0]["id"]  # from image_only's results, for both models
    second = backend.refine(first.session.id, pick, "is green", ["tirg", "image_only"], 4)
    assert [c for _, c in second.strip()] == [f"1. {t.text}", "2. is green"]
    assert second.session.requests() == [t.text, "is green"]  # the first search's words carry on
    assert "**Step 2**" in session_markdown(second) and "“is green”" in session_markdown(second)
    js = second.to_json()
    assert js["step"] == 2 and [s["picture"] for s in js["steps"]] == [t.source, pick]
    assert set(js["results"]) == {"tirg", "image_only"} and all(len(v) == 4 for v in js["results"].values())
    assert backend.back(first.session.id, 1).outcomes[0].rows == first.outcomes[0].rows
    assert backend.restore(first.session.id).session.step == 1 and backend.restore("gone") is None
    # a words-only start: no picture at step 1, its words still count later
    words = backend.compose(["tirg"], None, "red dress", 3)
    assert words.session.current.picture is None and words.strip() == [(None, "1. red dress")]
    nxt = backend.refine(words.session.id, words.outcomes[0].rows[0]["id"], "is blue", ["tirg"], 3)
    assert nxt.session.requests() == ["red dress", "is blue"]
