"""The Gradio demo, served in-process on loopback, driven through gradio_client.

Real tiny models (tiny_cnn + LSTM, untrained) over a 12-image drawn catalogue: the test
checks the plumbing (hit count, order, captions, ground-truth marks, bad input), not
model quality.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import gradio_client
import pytest
from _demo_data import odd_images, tiny_model, write_tiny_fashioniq

from fashion_retrieval.demo.handlers import (
    DemoBackend,
    gallery_value,
    normalize_text,
    summary_markdown,
)
from fashion_retrieval.search.query import QueryError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    from fashion_retrieval.data.fashioniq import load_fashioniq

    root = write_tiny_fashioniq(tmp_path_factory.mktemp("fiq"))
    return load_fashioniq(root, "val")


@pytest.fixture(scope="module")
def models(catalogue):
    from fashion_retrieval.search.retriever import Retriever

    return {name: Retriever(tiny_model(name, seed=i), catalogue.items)
            for i, name in enumerate(("tirg", "text_only", "image_only"))}


@pytest.fixture(scope="module")
def backend(models, catalogue):
    return DemoBackend(models, catalogue, max_k=10)


@pytest.fixture(scope="module")
def client(models, catalogue):
    from fashion_retrieval.demo.app import build_demo, launch_demo

    demo = build_demo(models, dataset=catalogue, max_k=10, default_k=4)
    launch_demo(demo, server_name="127.0.0.1", server_port=0, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def _call(client, image, text, model, k):
    image = gradio_client.handle_file(str(image)) if image is not None else None
    return client.predict(image, text, model, k, api_name="/search")


# ---------------------------------------------------------------- handlers, no server
def test_validate_k(backend):
    assert backend.validate_k(3) == 3 and backend.validate_k(10.0) == 10
    for bad in (0, 11, -1, 2.5, "abc", "3", True, None, float("nan")):  # a number, not text or a bool
        with pytest.raises(QueryError, match="K must be a whole number from 1 to 10"):
            backend.validate_k(bad)


def test_truth_and_identify(backend, catalogue, tmp_path):
    t = catalogue.triplets[0]
    copy = tmp_path / "copy.png"
    shutil.copy(catalogue.item_by_id()[t.source].path, copy)
    assert backend.identify(str(copy)) == t.source  # found by content, not by path
    other = odd_images(tmp_path / "odd")["gray"]
    assert backend.identify(str(other)) is None
    truth = backend.truth_for(t.source, "  " + t.text.upper() + ". ")
    assert truth is not None and t.target in truth.targets
    assert backend.truth_for(t.source, "something else") is None
    assert normalize_text(" Is  Blue. ") == "is blue"


def test_examples_come_from_real_triplets(backend, catalogue):
    examples = backend.example_triplets(4)
    assert len(examples) == 4
    ids = catalogue.item_by_id()
    assert all(t.source in ids and t.target in ids for t in examples)
    showcase = backend.showcase_items(8)
    assert len(showcase) == 8 and len({it.id for it in showcase}) == 8


def test_marks_and_summary(backend, catalogue):
    t = catalogue.triplets[0]
    source = catalogue.item_by_id()[t.source]
    outcome = backend.search("tirg", source.path, t.text, 10)
    assert len(outcome.rows) == 10 and t.source not in {r["id"] for r in outcome.rows}
    for row in outcome.rows:  # a hit is correct exactly when its caption is the target's
        assert row["correct"] == (row["caption"] == t.target_caption)
    assert any(r["correct"] for r in outcome.rows)  # 11 candidates, top 10: the target's in
    captions = [caption for _, caption in gallery_value(outcome)]
    assert all(c.startswith("✓") == r["correct"] for c, r in zip(captions, outcome.rows, strict=True))
    text = summary_markdown([outcome], 10)
    assert "tirg" in text and f"rank {outcome.first_correct_rank()}" in text


# ---------------------------------------------------------------- through gradio_client
def test_api_text_search_matches_retriever(client, models, catalogue):
    hits = _call(client, None, "red striped dress", "text_only", 5)
    assert len(hits) == 5
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    by_id = catalogue.item_by_id()
    for h in hits:
        assert set(h) >= {"id", "score", "caption", "category", "rank"}
        assert h["caption"] == by_id[h["id"]].caption and h["category"] == "dress"
    direct = models["text_only"].search(text="red striped dress", k=5)
    assert [h["id"] for h in hits] == [d.id for d in direct]
    assert scores == pytest.approx([d.score for d in direct], abs=1e-3)


def test_api_composed_search_marks_ground_truth(client, catalogue):
    t = catalogue.triplets[1]
    source = catalogue.item_by_id()[t.source]
    hits = _call(client, source.path, t.text, "tirg", 10)
    assert len(hits) == 10
    assert t.source not in {h["id"] for h in hits}
    assert all(h["correct"] == (h["caption"] == t.target_caption) for h in hits)


def test_api_image_only_search(client, catalogue):
    source = catalogue.items[0]
    hits = _call(client, source.path, "", "image_only", 3)
    assert len(hits) == 3 and source.id not in {h["id"] for h in hits}


@pytest.mark.parametrize("kind", ["gray", "rgba", "cmyk", "i16"])
def test_api_accepts_awkward_image_modes(client, tmp_path, kind):
    path = odd_images(tmp_path)[kind]
    hits = _call(client, path, "is blue", "tirg", 4)
    assert len(hits) == 4


def _expect_error(client, image, text, model, k, pattern):
    with pytest.raises(Exception) as info:  # gradio_client raises AppError with our message
        _call(client, image, text, model, k)
    assert pattern in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)


def test_api_bad_input_gives_readable_errors_and_keeps_serving(client, tmp_path):
    odd = odd_images(tmp_path)
    huge = tmp_path / "huge.png"
    from PIL import Image

    Image.new("1", (9000, 8000)).save(huge)  # 72 Mpx: over the decoder's limit, 1 MB on disk
    cases = [
        (None, "", "tirg", 3, "Give a picture, a description, or both"),
        (None, "   ", "tirg", 3, "Give a picture, a description, or both"),
        (None, "red dress", "tirg", 0, "K must be a whole number from 1 to 10"),
        (None, "red dress", "tirg", 500, "K must be a whole number from 1 to 10"),
        (None, "red dress", "no_such_model", 3, "Unknown model 'no_such_model'"),
        (None, "zzzz qqqq", "text_only", 3, "knows none of the words"),
        (odd["text"], "is red", "tirg", 3, "notes.png"),
        (odd["empty"], "is red", "tirg", 3, "empty.jpg"),
        (odd["truncated"], "is red", "tirg", 3, "truncated"),
        (huge, "is red", "tirg", 3, "too many pixels"),
    ]
    for image, text, model, k, pattern in cases:
        _expect_error(client, image, text, model, k, pattern)
        assert len(_call(client, None, "blue dress", "tirg", 2)) == 2  # still serving


def test_unknown_words_with_a_picture_still_search(backend, catalogue):
    outcome = backend.search("tirg", catalogue.items[0].path, "zzzz qqqq", 3)
    assert len(outcome.rows) == 3
    assert any("none of the words" in note for note in outcome.notes)


def test_a_k_above_the_gallery_size_is_clipped_with_a_note(models, catalogue):
    outcome = DemoBackend(models, catalogue, max_k=50).search("text_only", None, "red dress", 20)
    assert len(outcome.rows) == len(catalogue.items) == 12 and outcome.k == 20
    assert outcome.notes == ["K is 20, but the gallery holds only 12 items."]


def test_sixteen_concurrent_searches(client):
    with ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(_call, client, None, f"{c} dress", "tirg", 3)
                for c in ("red", "blue", "green", "black") * 4]
        results = [j.result(timeout=120) for j in jobs]
    assert all(len(r) == 3 for r in results)


def test_page_has_the_three_tabs_and_search_api(client, models):
    info = client.view_api(print_info=False, return_format="dict")
    assert "/search" in info["named_endpoints"]
    assert [p["label"] for p in info["named_endpoints"]["/search"]["parameters"]] == ["image", "text", "model", "k"]
    labels = {name: [p["label"] for p in info["named_endpoints"][name]["parameters"]]
              for name in ("/refine", "/refine_back")}
    assert labels == {"/refine": ["session", "picture", "words", "models", "k", "policy"],
                      "/refine_back": ["session", "step"]}


def test_api_refinement_session_by_catalogue_ids(client, models, catalogue):
    """/refine: a catalogue item id as the picture (nothing uploaded), the words, a session
    id ("" starts one); each model's hits are the Retriever's session search leaving out what
    that model showed; /refine_back gives an earlier step's hits again."""
    from fashion_retrieval.search.retriever import CatalogueImage

    t, by_id = catalogue.triplets[0], catalogue.item_by_id()
    first = client.predict("", t.source, t.text, "tirg, image_only", 3, "", api_name="/refine")
    assert first["step"] == 1 and first["policy"] == "history" and set(first["results"]) == {"tirg", "image_only"}
    assert all(h["correct"] == (h["caption"] == t.target_caption) for h in first["results"]["tirg"])
    sid, pick = first["session"], first["results"]["image_only"][0]["id"]
    second = client.predict(sid, pick, "is striped", "", 3, "last_turn", api_name="/refine")
    assert second["session"] == sid and second["step"] == 2 and second["policy"] == "last_turn"
    assert [s["picture"] for s in second["steps"]] == [t.source, pick] and set(second["results"]) == set(models)
    for name in ("tirg", "image_only"):
        shown = {h["id"] for h in first["results"][name]}
        want = models[name].search_session(CatalogueImage(pick, by_id[pick].path), [t.text, "is striped"], 3,
                                           policy="last_turn", exclude_ids=shown | {t.source, pick})
        assert [h["id"] for h in second["results"][name]] == [h.id for h in want]
    back = client.predict(sid, 1, api_name="/refine_back")
    assert back["step"] == 1 and back["results"] == first["results"]
    cases = [
        (("/refine", sid, "no_such_item", "is red", "", 3, ""), "There is no catalogue item 'no_such_item'"),
        (("/refine", sid, pick, "   ", "", 3, ""), "Say what should change"),
        (("/refine", "stale", pick, "is red", "", 3, ""), "has ended (or never existed)"),
        (("/refine", sid, pick, "is red", "nope", 3, ""), "Unknown model 'nope'"),
        (("/refine_back", sid, 3), "There is no step 3 in this session"),
    ]
    for (api, *args), message in cases:
        with pytest.raises(Exception) as info:
            client.predict(*args, api_name=api)
        assert message in str(info.value) and "Traceback" not in str(info.value), str(info.value)


# ---------------------------------------------------------------- the embedded default
TINY_DEFAULT = dict(
    preset="easy", products=24, image_encoder="tiny_cnn", pretrained=False, embed_dim=32,
    compositors=("tirg", "image_only"), crossmodal=False, max_steps=4, batch_size=8,
)


@pytest.mark.slow
def test_embedded_default_builds_caches_and_resumes(tmp_path):
    from fashion_retrieval.serving.default import (
        MARKER,
        DefaultSpec,
        default_dir,
        is_complete,
        load_default,
    )

    spec = DefaultSpec(**TINY_DEFAULT)
    logs: list[str] = []
    bundle = load_default(tmp_path, spec, log=logs.append)
    root = default_dir(tmp_path)
    assert is_complete(tmp_path, spec) and (root / MARKER).is_file()
    assert set(bundle.models) == {"tirg", "image_only"}
    for name, retriever in bundle.models.items():
        assert (root / "models" / name / "final" / "index").is_dir()
        assert len(retriever) == len(bundle.dataset.items)
        # indexed from the training feature cache, with the store: catalogue picks need no backbone
        assert retriever.stored_features([bundle.dataset.items[0].id]).shape == (1, retriever.model.feature_dim)
    t = bundle.dataset.triplets[0]
    backend = DemoBackend(bundle.models, bundle.dataset)
    outcome = backend.search("tirg", bundle.dataset.item_by_id()[t.source].path, t.text, 5)
    assert len(outcome.rows) == 5 and outcome.truth is not None
    assert any("training" in line for line in logs)

    # a later start loads the cache: no training, no rendering
    logs.clear()
    again = load_default(tmp_path, spec, log=logs.append)
    assert not any("training" in line or "building" in line for line in logs)
    assert [h.id for h in again.models["tirg"].search(text="red dress", k=3)] == [
        h.id for h in bundle.models["tirg"].search(text="red dress", k=3)
    ]

    # an interrupted build: no marker, one model half-written -> only that one retrains
    (root / MARKER).unlink()
    final = root / "models" / "image_only" / "final"
    for f in final.iterdir():
        if f.is_file():
            f.unlink()
    logs.clear()
    load_default(tmp_path, spec, log=logs.append)
    assert any("tirg: checkpoint found" in line for line in logs)
    assert any("image_only: training" in line for line in logs)
    assert is_complete(tmp_path, spec)

    # another spec rebuilds the models
    other = DefaultSpec(**{**TINY_DEFAULT, "max_steps": 3})
    assert not is_complete(tmp_path, other)
    logs.clear()
    load_default(tmp_path, other, log=logs.append)
    assert any("built differently" in line for line in logs) and is_complete(tmp_path, other)
    # so does another colour lexicon (what the text side's colour words read)
    from fashion_retrieval.models import words

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(words, "lexicon_fingerprint", lambda: "another lexicon")
        assert not is_complete(tmp_path, other)


@pytest.mark.slow
def test_build_demo_without_models_uses_the_embedded_default(tmp_path):
    from fashion_retrieval.demo.app import build_demo
    from fashion_retrieval.serving.default import DefaultSpec

    spec = DefaultSpec(**{**TINY_DEFAULT, "compositors": ("text_only",), "crossmodal": True})
    demo = build_demo(home=tmp_path, default_spec=spec)
    backend = demo.fashion_retrieval_backend
    assert backend.model_names == ["text_only", "text_to_image"]
    assert len(backend.search("text_to_image", None, "red dress", 3).rows) == 3
    assert backend.example_triplets(2)  # ground truth from the synthetic catalogue


def test_queue_monitoring_summary_is_not_rebuilt_after_every_event(models, catalogue, monkeypatch):
    """Gradio rebuilds a pandas summary of up to 10,000 past events after each one unless
    told otherwise; the demo tells it (the load test's server CPU halved). A user's own
    setting wins. If Gradio renames the knob, this fails and says so."""
    from fashion_retrieval.demo.app import QUEUE_ANALYTICS, build_demo

    for key in QUEUE_ANALYTICS:
        monkeypatch.delenv(key, raising=False)
    demo = build_demo(models, dataset=catalogue, max_k=10, batch_wait_ms=None)
    queue = demo._queue
    assert getattr(queue, "ANAYLTICS_CACHE_FREQUENCY", None) == 1000, "gradio's analytics knob changed"
    assert queue.ANALYTICS_MAX_EVENTS == 1000
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "7")
    assert build_demo(models, dataset=catalogue, max_k=10, batch_wait_ms=None)._queue.ANAYLTICS_CACHE_FREQUENCY == 7
