"""``fashion_retrieval.build_index``: 2 processes agree with 1, the app reuses the result,
a stopped run resumes without redoing finished chunks, unreadable files are named once."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from _demo_data import write_tiny_checkpoint
from _photo_data import write_folder
from test_multiprocess import REPO, _launch

from fashion_retrieval.build_index import main
from fashion_retrieval.models.retrieval import RetrievalModel
from fashion_retrieval.paths import index_dir_for
from fashion_retrieval.search.gallery_store import GalleryStore
from fashion_retrieval.serving.catalogue import open_catalogue
from fashion_retrieval.serving.indexing import SUMMARY_FILE, WORK_DIR, chunk_file


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each in-process run makes an Accelerator; its state must not leak into other tests."""
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny checkpoint and a folder of 14 photos."""
    write_folder(tmp_path / "photos", 14, size=32)
    return write_tiny_checkpoint(tmp_path / "ck"), tmp_path / "photos"


def _args(ck: Path, photos: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(ck), "--gallery", str(photos), "--chunk-size", "4", "--batch-size", "3",
            *extra]


def _index_dir(ck: Path, photos: Path) -> Path:
    return index_dir_for(ck, open_catalogue(photos, log=lambda m: None).key)


def _count_backbone(monkeypatch) -> list[int]:
    """Images that go through the backbone from now on (one entry per batch)."""
    seen: list[int] = []
    real = RetrievalModel.image_features

    def counted(self, pixels):
        seen.append(len(pixels))
        return real(self, pixels)

    monkeypatch.setattr(RetrievalModel, "image_features", counted)
    return seen


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_processes_match_one_and_the_app_reuses_the_index(shop, monkeypatch) -> None:
    from fashion_retrieval.serving.service import open_service

    ck, photos = shop
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "0", "-m", "fashion_retrieval.build_index", *_args(ck, photos)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = _index_dir(ck, photos)
    proc = _launch(cmd, env, [out])
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["processes"] == 2 and summary["indexed"] == 14 and summary["chunks"] == 4
    assert not (out / WORK_DIR).exists()  # merged: the chunks are gone
    two = GalleryStore.load(out)

    seen = _count_backbone(monkeypatch)  # the app's own load path: nothing to embed
    service = open_service([str(ck)], gallery=str(photos), log=lambda m: None)
    retriever = next(iter(service.models.values()))
    assert seen == [] and retriever.index.ids == two.ids
    assert retriever.search(text="red dress", k=3)

    shutil.rmtree(out)
    assert main(_args(ck, photos)) == 0
    one = GalleryStore.load(out)
    assert one.ids == two.ids == [it.id for it in open_catalogue(photos).items]
    assert one.key == two.key
    np.testing.assert_allclose(one.embeddings, two.embeddings, atol=1e-5)
    np.testing.assert_allclose(one.features.astype(np.float32), two.features.astype(np.float32), atol=1e-3)
    assert sum(seen) == 14  # the one-process run embedded everything itself


def test_a_stopped_run_resumes_without_redoing_finished_chunks(shop, monkeypatch, capsys) -> None:
    ck, photos = shop
    seen = _count_backbone(monkeypatch)
    assert main(_args(ck, photos, "--stop-after-chunks", "2")) == 3  # a kill after two chunks
    out = _index_dir(ck, photos)
    work = out / WORK_DIR
    assert sum(seen) == 8 and chunk_file(work, 1).is_file() and not chunk_file(work, 2).exists()
    assert not (out / "gallery.json").exists()  # nothing merged yet
    capsys.readouterr()

    seen.clear()
    assert main(_args(ck, photos)) == 0
    assert sum(seen) == 6  # only the two unfinished chunks (4 + 2 photos)
    cap = capsys.readouterr()
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["chunks_resumed"] == 2 and summary["indexed"] == 14
    assert "4/4 chunks" in cap.err and "ETA" in cap.err  # progress in the log
    store = GalleryStore.load(out)
    assert len(store) == 14

    # Once indexed, a run embeds only what changed: one new photo.
    write_folder(photos, 1, start=20, size=32)
    seen.clear()
    assert main(_args(ck, photos)) == 0
    assert sum(seen) == 1 and len(GalleryStore.load(out)) == 15


def test_a_changed_catalogue_invalidates_unfinished_chunks(shop, monkeypatch) -> None:
    ck, photos = shop
    seen = _count_backbone(monkeypatch)
    assert main(_args(ck, photos, "--stop-after-chunks", "1")) == 3
    write_folder(photos, 1, start=30, size=32)  # the catalogue changed before the restart
    seen.clear()
    assert main(_args(ck, photos)) == 0
    assert sum(seen) == 15  # the old chunk no longer fits the catalogue: all embedded again


def test_unreadable_files_are_skipped_and_named_once(shop, capsys) -> None:
    from fashion_retrieval.serving.photos import scan_cache_path, scan_photo_folder

    ck, photos = shop
    (photos / "broken.jpg").write_bytes(b"not a picture")  # caught by the folder scan
    scan_photo_folder(photos, cache=scan_cache_path(photos))
    late = sorted(photos.rglob("*.png"))[0]  # breaks after the scan: caught while embedding
    st = late.stat()
    late.write_bytes(b"\0" * st.st_size)
    os.utime(late, ns=(st.st_atime_ns, st.st_mtime_ns))  # same stamp: the scan trusts it

    assert main(_args(ck, photos)) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["indexed"] == 13
    assert sorted(Path(s["path"]).name for s in summary["skipped"]) == sorted(["broken.jpg", late.name])
    assert cap.err.count("broken.jpg") == 1 and cap.err.count(late.name) == 1
    assert "Traceback" not in cap.err
    out = Path(summary["index_dir"])
    assert json.loads((out / SUMMARY_FILE).read_text())["skipped"] == summary["skipped"]
    assert late.relative_to(photos).as_posix() not in GalleryStore.load(out).ids


@pytest.mark.parametrize("case", ["no checkpoint", "no gallery", "empty gallery", "unknown dataset"])
def test_bad_input_is_a_clear_message(shop, tmp_path, capsys, case) -> None:
    ck, photos = shop
    (tmp_path / "empty").mkdir()
    args = {
        "no checkpoint": _args(tmp_path / "nowhere", photos),
        "no gallery": _args(ck, tmp_path / "missing"),
        "empty gallery": _args(ck, tmp_path / "empty"),
        "unknown dataset": _args(ck, photos, "--dataset", "nope"),
    }[case]
    try:
        rc = main(args)
    except SystemExit as stop:  # argparse: a bad choice
        rc = stop.code
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    word = {"no checkpoint": "nowhere", "no gallery": "missing", "empty gallery": "empty",
            "unknown dataset": "nope"}[case]
    assert word in err and ("error" in err)
