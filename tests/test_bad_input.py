"""Bad input, as the harshest users send it: every case gives a result or a clear message.

Images and texts go through ``load_image`` / the text encoder, ``Retriever.search`` and the
demo's ``/search`` endpoint (served on loopback, called with gradio_client: the message a
user sees). Data sets and checkpoints go through their loaders. Every case is recorded for
the README's reliability table (``python -m benchmarks.reliability``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import gradio_client
import pytest
import torch
from _demo_data import tiny_model, write_tiny_checkpoint, write_tiny_fashioniq

from benchmarks.reliability import expect, short
from benchmarks.reliability.corpus import TEXT_CASES, write_image_cases
from fashion_retrieval.data.images import ImageLoadError, load_image
from fashion_retrieval.search.query import QueryError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

K = 3


@pytest.fixture(scope="module")
def image_cases(tmp_path_factory):
    return {c.name: c for c in write_image_cases(tmp_path_factory.mktemp("bad_images"))}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    from fashion_retrieval.data.fashioniq import load_fashioniq

    return load_fashioniq(write_tiny_fashioniq(tmp_path_factory.mktemp("fiq")), "val")


@pytest.fixture(scope="module")
def retriever(catalogue):
    from fashion_retrieval.search.retriever import Retriever

    return Retriever(tiny_model("tirg"), catalogue.items)


@pytest.fixture(scope="module")
def client(retriever, catalogue):
    from fashion_retrieval.demo.app import build_demo, launch_demo

    demo = build_demo({"tirg": retriever}, dataset=catalogue, max_k=10)
    launch_demo(demo, server_name="127.0.0.1", server_port=0, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def _api(client, image: Path | None, text: str) -> tuple[list | None, str]:
    """``(hits, "")`` or ``(None, the error message the user sees)`` from the /search endpoint."""
    from gradio_client import handle_file

    try:
        hits = client.predict(handle_file(str(image)) if image else None, text, "tirg", K, api_name="/search")
        return hits, ""
    except Exception as err:  # gradio_client's AppError carries the handler's message
        return None, str(err)


def _readable(message: str, *words: str) -> bool:
    """A message a user can act on: has the words, no traceback, no server-side path."""
    return all(w.lower() in message.lower() for w in words) and "Traceback" not in message and "/tmp/" not in message


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("name", [
    "truncated JPEG", "text file named .jpg", "zero bytes", "decompression bomb (40000x40000 in 200 bytes)",
    "over max_pixels (9000x8000)", "1x1 pixel", "16-bit greyscale", "greyscale", "palette",
    "RGBA (transparent)", "CMYK JPEG", "EXIF-rotated JPEG", "animated GIF", "huge valid JPEG (4000x3000)",
])
def test_image_case(name, image_cases, retriever, client):
    case = image_cases[name]
    # 1. load_image
    try:
        img = load_image(case.path)
        observed, ok = f"RGB {img.size[0]}x{img.size[1]}", img.mode == "RGB" and img.size == case.size
        ok = ok and case.error is None
    except ImageLoadError as err:
        observed, ok = f"ImageLoadError: {err}", case.error is not None and _readable(str(err).replace(str(case.path.parent), ""), case.path.name, case.error)
    expect("images", name, "load_image", observed, ok)
    # 2. Retriever.search
    try:
        hits = retriever.search(image=case.path, k=K)
        observed, ok = f"{len(hits)} hits", case.error is None and len(hits) == K
    except ValueError as err:
        observed, ok = f"{type(err).__name__}: {err}", case.error is not None and case.error in str(err)
    expect("images", name, "Retriever.search", observed, ok)
    # 3. the demo's /search endpoint: what the user sees
    hits, message = _api(client, case.path, "is blue")
    if case.error is None:
        expect("images", name, "demo /search", f"{len(hits or [])} hits {message}", hits is not None and len(hits) == K)
    else:
        expect("images", name, "demo /search", f"message: {message}", _readable(message, case.path.name, case.error))


def test_image_conversions_keep_the_content(image_cases):
    """The accepted odd images decode to the right pixels, not just to RGB."""
    white = load_image(image_cases["RGBA (transparent)"].path).getpixel((5, 5))
    first = load_image(image_cases["animated GIF"].path).getpixel((5, 5))
    spread = load_image(image_cases["16-bit greyscale"].path).convert("L").getextrema()
    cmyk = load_image(image_cases["CMYK JPEG"].path).getpixel((32, 40))
    ok = white == (255, 255, 255) and first[0] > 200 > first[1] and spread[1] - spread[0] > 200 and cmyk[0] > 150 > cmyk[2]
    expect("images", "pixel content of odd modes", "load_image",
           f"transparent->{white}, GIF frame 0->{first}, 16-bit range {spread}, CMYK red->{cmyk}", ok)


# ---------------------------------------------------------------- texts
@pytest.mark.parametrize("name", list(TEXT_CASES))
def test_text_case(name, retriever, client):
    text, has_words = TEXT_CASES[name]
    model = retriever.model
    with torch.inference_mode():
        emb = model.encode_query(texts=[text])  # (1, D)
    expect("texts", name, "text encoder", f"embedding {tuple(emb.shape)}, finite={bool(torch.isfinite(emb).all())}",
           emb.shape[0] == 1 and bool(torch.isfinite(emb).all()))
    blank, too_long = not text.strip(), len(text) > 500
    try:  # the library and the demo share one rule set (search.query): the same refusals
        hits = retriever.search(text=text, k=K)
        observed, ok = f"{len(hits)} hits", not blank and not too_long and len(hits) == K and all(h.score == h.score for h in hits)
    except QueryError as err:
        observed = f"QueryError: {err}"
        ok = _readable(str(err), "description") if blank else too_long and _readable(str(err), "characters", "500")
    expect("texts", name, "Retriever.search", observed, ok)
    hits, message = _api(client, None, text)
    if blank:
        ok = _readable(message, "description")
    elif len(text) > 500:
        ok = _readable(message, "characters", "500")
    elif not has_words:
        ok = _readable(message, "none of the words")
    else:
        ok = hits is not None and len(hits) == K
    expect("texts", name, "demo /search", f"{len(hits)} hits" if hits is not None else f"message: {message}", ok)


# ---------------------------------------------------------------- data sets
def _write_fashion200k(root: Path, lines: list[bytes], images: list[str]) -> Path:
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "dress_train_detect_all.txt").write_bytes(b"\n".join(lines) + b"\n")
    for rel in images:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"jpeg")
    return root / "labels" / "dress_train_detect_all.txt"


def test_fashion200k_malformed_lines_are_counted_with_file_and_line(tmp_path, caplog):
    from fashion_retrieval.data.fashion200k import load_fashion200k

    good = [f"women/dresses/{i}/{i}_0.jpeg" for i in range(4)]
    lines = [
        f"{good[0]}\t0.9\tred striped dress".encode(),
        f"{good[1]}\t0.8\tblue striped dress".encode(),
        b"women/dresses/x/x_0.jpeg\t0.7",  # 2 fields
        f"{good[2]}\tnot-a-score\tgreen dress".encode(),
        f"{good[3]}\t0.5\t!!!".encode(),  # empty after clean-up
        "women/dresses/y/y_0.jpeg\t0.5\tcaf\xe9 dress".encode("latin-1"),  # wrong encoding
        f"{good[0]}\t0.9\tred striped dress".encode(),  # duplicated line
        b"women/dresses/gone/gone_0.jpeg\t0.4\tblack dress",  # image absent
    ]
    label = _write_fashion200k(tmp_path, lines, good)
    with caplog.at_level(logging.WARNING, "fashion_retrieval.data"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_fashion200k(tmp_path, "train", caption_cleanup="normalize")  # "!!!" -> ""
    want = {"bad_fields": 1, "bad_score": 1, "empty_caption": 1, "bad_encoding": 1, "duplicate": 1, "missing_image": 1}
    where = {f"{label}:{n}" for n in (3, 4, 5, 6, 7)}
    logged = {w for w in where if w in caplog.text}
    summary = [str(w.message) for w in caught if "skipped records" in str(w.message)]
    ok = len(data.items) == 2 and dict(data.skipped) == want and logged == where and len(summary) == 1
    expect("data sets", "Fashion200k: 6 malformed of 8 lines", "load_fashion200k",
           f"{len(data.items)} items; skipped {dict(sorted(data.skipped.items()))}; {len(logged)}/5 lines logged as file:line; "
           f"one warning: {short(summary[0] if summary else '-', 90)}", ok)


def test_fashion200k_label_file_in_utf16(tmp_path):
    from fashion_retrieval.data.fashion200k import load_fashion200k

    good = [f"women/dresses/{i}/{i}_0.jpeg" for i in range(3)]
    text = "\n".join(f"{p}\t0.9\tred dress number {i}" for i, p in enumerate(good)) + "\n"
    label = _write_fashion200k(tmp_path, [], good)
    label.write_bytes(text.encode("utf-16"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_fashion200k(tmp_path, "train")
        observed = f"{len(data.items)} items, skipped {dict(data.skipped)}"
        ok = False  # an empty data set with per-line noise is not a clear answer
    except ValueError as err:
        observed, ok = f"ValueError: {err}", label.name in str(err) and "UTF-8" in str(err)
    expect("data sets", "Fashion200k label file in UTF-16", "load_fashion200k", observed, ok)


def _fashioniq(root: Path) -> Path:
    write_tiny_fashioniq(root)
    return root


def test_fashioniq_split_naming_absent_images(tmp_path):
    from fashion_retrieval.data.fashioniq import load_fashioniq

    root = _fashioniq(tmp_path)
    for name in ("red_solid", "blue_striped"):
        (root / "images" / f"{name}.png").unlink()
    split = root / "image_splits" / "split.dress.val.json"
    ids = json.loads(split.read_text())
    split.write_text(json.dumps(ids + ids[:2] + ["never_downloaded"]))  # duplicates + absent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_fashioniq(root, "val")
    summary = [str(w.message) for w in caught if "skipped" in str(w.message)]
    ok = (len(data.items) == 10 and data.skipped["missing_gallery_image"] == 3 and data.skipped["duplicate"] == 2
          and data.skipped["missing_image"] == 4 and len(data.triplets) == 8 and len(summary) == 1)
    expect("data sets", "FashionIQ split naming 3 absent images, 2 duplicates", "load_fashioniq",
           f"{len(data.items)} items, {len(data.triplets)} queries; skipped {dict(sorted(data.skipped.items()))}; "
           f"{len(summary)} warning", ok)


def test_fashioniq_caption_file_in_wrong_encoding(tmp_path):
    from fashion_retrieval.data.fashioniq import load_fashioniq

    root = _fashioniq(tmp_path)
    cap = root / "captions" / "cap.dress.val.json"
    cap.write_bytes(cap.read_text().replace("is blue", "is blué").encode("latin-1"))
    try:
        load_fashioniq(root, "val")
        observed, ok = "loaded without a word", False
    except ValueError as err:
        observed, ok = f"ValueError: {err}", cap.name in str(err) and "UTF" in str(err)
    expect("data sets", "FashionIQ caption file in Latin-1", "load_fashioniq", observed, ok)


def test_fashioniq_malformed_annotations_are_counted(tmp_path):
    from fashion_retrieval.data.fashioniq import load_fashioniq

    root = _fashioniq(tmp_path)
    cap = root / "captions" / "cap.dress.val.json"
    good = json.loads(cap.read_text())
    bad = [
        "not an object",
        {"candidate": "red_solid", "captions": ["is blue"]},  # no target
        {"candidate": "red_solid", "target": 7, "captions": ["is blue"]},  # target not a string
        {"candidate": "red_solid", "target": "blue_solid", "captions": "is blue"},  # not a list
        {"candidate": "red_solid", "target": "blue_solid", "captions": ["", "  "]},  # blank captions
        {"candidate": "red_solid", "target": "not_in_split", "captions": ["is odd"]},
    ]
    cap.write_text(json.dumps(good + bad))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_fashioniq(root, "val")
    want = {"bad_entry": 4, "no_caption": 1, "not_in_split": 1}
    ok = len(data.triplets) == len(good) and dict(data.skipped) == want
    expect("data sets", "FashionIQ: 6 malformed annotations among 12 good", "load_fashioniq",
           f"{len(data.triplets)} queries kept; skipped {dict(sorted(data.skipped.items()))}", ok)


def test_fashion200k_test_queries_naming_unknown_images(tmp_path):
    from fashion_retrieval.data.fashion200k import load_fashion200k

    paths = [f"women/dresses/{i}/{i}_0.jpeg" for i in range(3)]
    lines = [f"{p}\t0.9\t{c} dress".encode() for p, c in zip(paths, ("red", "blue", "green"), strict=True)]
    _write_fashion200k(tmp_path, lines, paths)
    (tmp_path / "labels" / "dress_train_detect_all.txt").rename(tmp_path / "labels" / "dress_test_detect_all.txt")
    (tmp_path / "test_queries.txt").write_text(
        f"{paths[0]} {paths[1]}\n{paths[0]} women/x/gone.jpeg\nonly-one-field\n{paths[1]} {paths[1]}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_fashion200k(tmp_path, "test", caption_cleanup="normalize")
    want = {"unknown_query_path": 1, "bad_fields": 1, "no_word_difference": 1}
    ok = [t.text for t in data.triplets] == ["replace red with blue"] and dict(data.skipped) == want
    expect("data sets", "Fashion200k test_queries.txt: 3 bad of 4 lines", "load_fashion200k",
           f"{len(data.triplets)} query kept; skipped {dict(sorted(data.skipped.items()))}", ok)


# ---------------------------------------------------------------- checkpoints
def _break_checkpoint(ckpt: Path, how: str) -> None:
    """Damage a checkpoint folder in one of the ways users do."""
    config = ckpt / "config.json"
    raw = json.loads(config.read_text())
    if how == "missing model.safetensors":
        (ckpt / "model.safetensors").unlink()
    elif how == "missing config.json":
        config.unlink()
    elif how == "truncated model.safetensors":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif how == "config.json unknown key":
        config.write_text(json.dumps({**raw, "embed_dimm": 32}))
    elif how == "config.json wrong type":
        config.write_text(json.dumps({**raw, "embed_dim": "thirty-two"}))
    elif how == "config.json not JSON":
        config.write_text(config.read_text()[:40])
    elif how == "another model type (BERT)":
        config.write_text(json.dumps({"model_type": "bert", "hidden_size": 384, "architectures": ["BertModel"]}))
    elif how == "weights of another compositor":
        config.write_text(json.dumps({**raw, "compositor": "concat"}))


# case -> (file the message must name, words of the fix)
CHECKPOINT_CASES = {
    "missing folder": ("nowhere", "does not exist"),
    "missing config.json": ("config.json", "save_checkpoint"),
    "missing model.safetensors": ("model.safetensors", "re-save"),
    "truncated model.safetensors": ("model.safetensors", "re-save"),
    "config.json unknown key": ("config.json", "embed_dimm"),
    "config.json wrong type": ("config.json", "embed_dim"),
    "config.json not JSON": ("config.json", "restore"),
    "another model type (BERT)": ("config.json", "save_checkpoint"),
    "weights of another compositor": ("model.safetensors", "config.json"),
}


@pytest.mark.parametrize("how", list(CHECKPOINT_CASES))
def test_broken_checkpoint(how, tmp_path):
    from fashion_retrieval.checkpoints import load_model

    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    _break_checkpoint(ckpt, how)
    target = tmp_path / "nowhere" if how == "missing folder" else ckpt
    file, fix = CHECKPOINT_CASES[how]
    try:
        load_model(str(target))
        observed, ok = "loaded", False
    except (ValueError, OSError) as err:
        observed = f"{type(err).__name__}: {err}"
        ok = file in str(err) and fix.lower() in str(err).lower() and "Traceback" not in str(err)
    expect("checkpoints", how, "hub.load_model", observed, ok)
