"""Publishing FashionIQ and Fashion200k as Hub datasets, and streaming them back into training,
evaluation and both apps (local ``--out`` folders; the Hub is an autospec double, no network)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from helpers import autospec_hf_api
from test_multiprocess import _launch

from fashion_retrieval.data import DATASETS, load_retrieval_dataset
from fashion_retrieval.data.publish import PublishConfig, main, publish, shard_count
from fashion_retrieval.data.published import read_card
from fashion_retrieval.data.synthetic.writers import write_catalog

REPO = Path(__file__).resolve().parents[1]
FIQ_SPLITS = ("train", "val", "test")


def _catalogue(root: Path, fmt: str, products: int, views: int, categories=None) -> Path:
    write_catalog(root, fmt, products, seed=0, preset="easy", image_size=32, views=views,
                  workers=1, categories=categories)
    return root


def _publish(root: Path, out: Path, dataset: str) -> Path:
    assert main(["--dataset", dataset, "--root", str(root), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def fiq(tmp_path_factory) -> tuple[Path, Path]:
    """(synthetic FashionIQ root: 60 products, 2 categories; its published folder)."""
    tmp = tmp_path_factory.mktemp("fiq")
    root = _catalogue(tmp / "fiq", "fashioniq", 60, 1, ["shirt", "skirt"])
    return root, _publish(root, tmp / "published", "fashioniq")


def _same_split(original, published) -> None:
    """Items (ids, captions, categories, attributes, image bytes), triplets and skips equal."""
    fields = lambda ds: [(i.id, i.caption, i.category, i.attributes) for i in ds.items]  # noqa: E731
    assert fields(published) == fields(original) and published.triplets == original.triplets
    assert published.skipped == original.skipped and published.protocol == original.protocol
    for a, b in zip(original.items, published.items, strict=True):
        assert Path(a.path).read_bytes() == Path(b.path).read_bytes() and a.path != b.path


def test_card_declares_configs_counts_and_protocol(fiq):
    import datasets

    root, out = fiq
    card = read_card(out)
    assert (card.dataset, card.protocol, card.eval_split) == ("fashioniq", "fashioniq", "val")
    assert list(card.splits) == list(FIQ_SPLITS)
    for split in FIQ_SPLITS:
        original = load_retrieval_dataset("fashioniq", root, split)
        s = card.splits[split]
        assert (s.gallery, s.triplets) == (len(original.items), len(original.triplets)) != (0, 0)
        assert s.categories == ["shirt", "skirt"] and s.missing_images == 0 and s.skipped == {}
        assert s.options["caption_mode"] == "join"
    # What `datasets` alone finds through the card's configs: original bytes, same schema.
    gallery = datasets.load_dataset(str(out), "gallery", split="val", streaming=True)
    rows = list(gallery.cast_column("image", datasets.Image(decode=False)))
    first = load_retrieval_dataset("fashioniq", root, "val").items[0]
    assert rows[0]["id"] == first.id and rows[0]["image"]["bytes"] == Path(first.path).read_bytes()
    assert rows[0]["image"]["path"] == f"images/{Path(first.path).name}"
    triplet = next(iter(datasets.load_dataset(str(out), "triplets", split="train", streaming=True)))
    assert set(triplet) >= {"source", "target", "text", "source_id", "target_id", "captions"}
    assert triplet["source"].size == (32, 32)
    text = (out / "README.md").read_text()
    assert "Nothing: every listed image was found." in text and "per category" in text
    assert sorted(p.name for p in (out / "triplets").iterdir())[0] == "test-00000-of-00001.parquet"
    assert [shard_count(b, 100) for b in (0, 100, 101, 900)] == [1, 1, 8, 16]


def test_stream_reads_back_the_original_splits(fiq, fashion_home):
    root, out = fiq
    for split in FIQ_SPLITS:
        _same_split(load_retrieval_dataset("fashioniq", root, split), load_retrieval_dataset("published", out, split))
    assert "published" in DATASETS.names()
    default = load_retrieval_dataset("published", out, None)  # the card's evaluation split
    assert default.split == "val" and default.meta["published"]["source"] == str(out)
    assert Path(default.items[0].path).is_relative_to(fashion_home / "published")
    skirts = load_retrieval_dataset("published", out, "validation", categories=["skirt"])
    assert skirts.split == "val" and {i.category for i in skirts.items} == {"skirt"}
    assert {t.category for t in skirts.triplets} == {"skirt"}
    no_images = load_retrieval_dataset("published", out, "train", images=False)
    assert {i.path for i in no_images.items} == {""} and no_images.triplets
    with pytest.raises(ValueError, match="no split 'dev'.*train, val, test"):
        load_retrieval_dataset("published", out, "dev")
    with pytest.raises(ValueError, match="unknown fashioniq categories.*dress"):
        load_retrieval_dataset("published", out, "val", categories=["dress"])
    with pytest.raises(FileNotFoundError, match="has no README.md"):
        load_retrieval_dataset("published", root, "val")  # the original folder is not published


def test_two_processes_train_from_the_stream_and_recalls_equal_the_folders(fiq, tmp_path):
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.models.embedding import embed_images
    from fashion_retrieval.training.cli import evaluate_main

    root, out = fiq
    run, home = tmp_path / "run", tmp_path / "train_home"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0", str(REPO / "training" / "train.py"),
        "--dataset", "published", "--data-root", str(out), "--streaming", "true",
        "--model.image-encoder", "tiny_cnn", "--model.text-encoder", "lstm", "--model.compositor", "tirg",
        "--model.embed-dim", "16", "--model.pretrained", "false", "--batch-size", "2", "--max-steps", "2",
        "--save-every", "100", "--eval-every", "100", "--log-every", "1",
        "--model.text-kwargs", '{"word_dim": 16, "hidden": 16}',
        "--output-dir", str(run), "--debug-log-ids",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO), "FASHION_RETRIEVAL_HOME": str(home)}
    proc = _launch(cmd, env, [run, home])
    assert proc.returncode == 0, proc.stderr[-4000:]
    targets = [[json.loads(line)["target"] for line in (run / f"debug_ids_rank{r}.jsonl").read_text().splitlines()]
               for r in (0, 1)]
    assert [len(t) for t in targets] == [2, 2] and all(len(b) == 2 for t in targets for b in t)
    # The train images came from the parquet shards: only the eval split's gallery was written out.
    written = {p.name for p in home.glob("published/*/images/*")}
    assert written == {Path(i.path).name for i in load_retrieval_dataset("fashioniq", root, "val").items}
    checkpoint = run / "final"
    # val: the standard protocol; train with one gallery: R@1 over a larger gallery.
    for split, protocol in (("val", "fashioniq"), ("train", "one_gallery")):
        recalls = []
        for args in (["--dataset", "published", "--data-root", str(out)],
                     ["--dataset", "fashioniq", "--data-root", str(root)]):
            result = tmp_path / f"{split}-{args[1]}.json"
            options = ["--split", split] + (["--protocol", protocol] if split == "train" else [])
            assert evaluate_main(["--checkpoint", str(checkpoint), "--json", str(result), *options, *args]) == 0
            recalls.append(json.loads(result.read_text()))
        streamed, folders = recalls
        assert streamed["protocol"] == folders["protocol"] == protocol
        assert streamed["recall"] == folders["recall"] and streamed["categories"] == folders["categories"]
        assert streamed["queries"] == folders["queries"] > 0
    model = load_model(str(checkpoint))
    pub = load_retrieval_dataset("published", out, "train")
    orig = load_retrieval_dataset("fashioniq", root, "train")
    assert torch.equal(embed_images(model, [i.path for i in pub.items]),
                       embed_images(model, [i.path for i in orig.items]))


def test_fashion200k_publishes_with_its_caption_protocol(tmp_path):
    from fashion_retrieval.evaluation import evaluate
    from fashion_retrieval.models import ModelConfig, RetrievalModel
    from fashion_retrieval.models.embedding import embed_images

    root = _catalogue(tmp_path / "f200k", "fashion200k", 30, 2)
    out = _publish(root, tmp_path / "published", "fashion200k")
    card = read_card(out)
    assert (card.dataset, card.protocol, card.eval_split, list(card.splits)) == (
        "fashion200k", "fashion200k", "test", ["train", "test"])
    original = load_retrieval_dataset("fashion200k", root, "test")
    published = load_retrieval_dataset("published", out, None)
    _same_split(original, published)
    options = card.splits["test"].options
    assert (options["seed"], options["queries_generated"]) == (0, False)
    torch.manual_seed(0)
    config = ModelConfig(image_encoder="tiny_cnn", compositor="tirg", embed_dim=16, pretrained=False,
                         text_kwargs={"word_dim": 8, "hidden": 8})
    model = RetrievalModel(config, texts=original.texts()).eval()
    a, b = evaluate(model, original), evaluate(model, published)
    assert a["protocol"] == b["protocol"] == "fashion200k" and a["queries"] == b["queries"] > 0
    assert a["recall"] == b["recall"] and {"R@1", "R@10", "R@50"} <= set(a["recall"])
    assert torch.equal(embed_images(model, [i.path for i in published.items]),
                       embed_images(model, [i.path for i in original.items]))


def test_missing_image_is_reported_in_the_card(tmp_path):
    root = _catalogue(tmp_path / "fiq", "fashioniq", 24, 1, ["skirt"])
    val = load_retrieval_dataset("fashioniq", root, "val")
    gone = Path(val.item_by_id()[val.triplets[0].target].path)
    gone.unlink()
    with pytest.warns(UserWarning, match="missing_gallery_image=1, missing_image="):  # said once, no crash
        out = _publish(root, tmp_path / "published", "fashioniq")
    card = read_card(out).splits["val"]
    assert card.missing_images == 1 and card.skipped["missing_image"] >= 1
    assert card.gallery == len(val.items) - 1
    text = (out / "README.md").read_text()
    assert "- **val**: 1 image(s) missing from the copy; skipped: " in text and "missing_image=" in text
    with pytest.warns(UserWarning, match="missing"):
        original = load_retrieval_dataset("fashioniq", root, "val")
    _same_split(original, load_retrieval_dataset("published", out, "val"))


def test_upload_creates_the_dataset_repo_and_uploads_the_folder(fiq, monkeypatch, capsys):
    cls = autospec_hf_api(monkeypatch)
    api = cls.return_value
    seen = {}
    upload = api.upload_folder.side_effect

    def record(**kwargs):
        folder = Path(kwargs["folder_path"])
        seen["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        seen["card"] = read_card(folder)
        return upload(**kwargs)

    api.upload_folder.side_effect = record
    root, _ = fiq
    argv = ["--dataset", "fashioniq", "--root", str(root), "--repo-id", "someone/fiq-copy", "--splits", "val"]
    assert main(argv) == 0
    api.create_repo.assert_called_once_with(repo_id="someone/fiq-copy", repo_type="dataset",
                                            private=False, exist_ok=True)
    assert api.upload_folder.call_count == 1
    call = api.upload_folder.call_args.kwargs
    assert (call["repo_id"], call["repo_type"]) == ("someone/fiq-copy", "dataset")
    assert not Path(call["folder_path"]).exists()  # the temporary folder is removed
    assert seen["files"] == ["README.md", "gallery/val-00000-of-00001.parquet",
                             "triplets/val-00000-of-00001.parquet"]
    assert list(seen["card"].splits) == ["val"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["url"].startswith("https://huggingface.co/datasets/someone/fiq-copy/commit/")
    with pytest.raises(ValueError, match="USER/NAME"):
        PublishConfig("fashioniq", str(root), repo_id="not a repo")
    private = publish(PublishConfig("fashioniq", str(root), repo_id="someone/p", private=True, splits=["test"]),
                      api=api)
    assert private["repo_id"] == "someone/p" and api.create_repo.call_args.kwargs["private"] is True


def test_bad_root_and_destination_are_clear_errors(fiq, tmp_path, capsys):
    root, out = fiq
    cases = [
        (["--dataset", "fashioniq", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
         "--root .*nope: folder does not exist"),
        (["--dataset", "fashion200k", "--root", str(root), "--out", str(tmp_path / "o")],
         "holds no fashion200k split \\(is --dataset right\\?\\)"),
        (["--dataset", "fashioniq", "--root", str(root)], "give --out DIR, --repo-id USER/NAME"),
        (["--dataset", "fashioniq", "--root", str(root), "--out", str(root)], "is not empty and is not a published"),
        (["--dataset", "fashioniq", "--root", str(root), "--out", str(out)], "pass --overwrite"),
        (["--dataset", "fashioniq", "--root", str(root), "--out", str(tmp_path / "o"), "--splits", "dev"],
         "no split\\(s\\) \\['dev'\\]"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: "), err
        assert re.search(message, err), (message, err)
    assert not (tmp_path / "o").exists()
    again = tmp_path / "again"
    _publish(root, again, "fashioniq")
    assert main(["--dataset", "fashioniq", "--root", str(root), "--out", str(again), "--overwrite",
                 "--splits", "val"]) == 0
    assert list(read_card(again).splits) == ["val"] and not list((again / "gallery").glob("train-*"))


def test_a_hub_repo_id_takes_the_same_streaming_path(fiq, monkeypatch, fashion_home):
    import datasets
    import huggingface_hub

    root, out = fiq
    real = datasets.load_dataset
    calls = []

    def fake_hub(path, *args, **kwargs):  # only the network is replaced
        calls.append((path, kwargs.get("name"), kwargs.get("streaming"), kwargs.get("revision")))
        return real(str(out) if path == "someone/fiq-copy" else path, *args, **kwargs)

    def fake_download(repo_id, filename, **kwargs):
        if repo_id != "someone/fiq-copy":
            raise OSError("no connection (offline test)")
        assert kwargs["repo_type"] == "dataset" and kwargs["revision"] == "v1"
        return str(out / filename)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    hub = load_retrieval_dataset("published", "someone/fiq-copy", "val", revision="v1")
    _same_split(load_retrieval_dataset("fashioniq", root, "val"), hub)
    assert calls == [("someone/fiq-copy", "gallery", True, "v1"), ("someone/fiq-copy", "triplets", True, "v1")]
    assert Path(hub.items[0].path).is_relative_to(fashion_home / "published" / "hub-someone--fiq-copy-v1")
    with pytest.raises(FileNotFoundError, match="not a folder here.*Hugging Face Hub.*offline test"):
        load_retrieval_dataset("published", "someone/other", "val", revision="v1")


def test_training_evaluation_and_apps_name_the_source_alike(fiq, tmp_path, fashion_home):
    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.dashboard.models import GallerySpec
    from fashion_retrieval.dashboard.models import load_gallery as dashboard_gallery
    from fashion_retrieval.demo.cli import parse_args
    from fashion_retrieval.models import ModelConfig, RetrievalModel
    from fashion_retrieval.serving.catalogue import open_catalogue
    from fashion_retrieval.serving.service import open_service
    from fashion_retrieval.training.config import TrainConfig

    root, out = fiq
    assert TrainConfig().with_overrides(["--dataset", "published", "--data-root", str(out)]).dataset == "published"
    args = parse_args(["--dataset", "published", "--gallery", str(out), "--checkpoint", "x"], env={})
    assert args.split is None  # the card's evaluation split
    demo = open_catalogue(str(out), split=args.split)  # the layout is detected from the card
    assert open_catalogue(str(out), dataset="published").name == "fashioniq"
    board = dashboard_gallery(GallerySpec("published", str(out), ""))
    original = load_retrieval_dataset("fashioniq", root, "val")
    _same_split(original, demo.dataset)
    _same_split(original, board.dataset)
    config = ModelConfig(image_encoder="tiny_cnn", compositor="tirg", embed_dim=16, pretrained=False,
                         text_kwargs={"word_dim": 8, "hidden": 8})
    checkpoint = save_checkpoint(RetrievalModel(config, texts=original.texts()), tmp_path / "ckpt")
    bundle = open_service([str(checkpoint)], gallery=str(out), dataset="published", split=None,
                          log=lambda _: None)
    hits = next(iter(bundle.models.values())).search(text=original.items[0].caption, k=3)
    assert len(hits) == 3 and all(Path(h.path).is_relative_to(fashion_home / "published") for h in hits)


def test_many_shards_keep_the_order_and_split_whole_across_two_ranks(fiq, tmp_path):
    from fashion_retrieval.data.streaming import shard_for_process, shuffle, stream_published

    root, _ = fiq
    out = tmp_path / "sharded"
    assert main(["--dataset", "fashioniq", "--root", str(root), "--out", str(out), "--splits", "train",
                 "--max-shard-mb", "0.01"]) == 0  # a few 32 px images per shard: 8 shards
    card = read_card(out).splits["train"]
    files = sorted((out / "triplets").iterdir())
    assert card.shards == {"gallery": 8, "triplets": 8} == {"gallery": len(files), "triplets": len(files)}
    _same_split(load_retrieval_dataset("fashioniq", root, "train"), load_retrieval_dataset("published", out, "train"))
    stream = shuffle(stream_published(out, "triplets", "train", decode=False), seed=3, buffer_size=4)
    parts = [[r["source_id"] + r["text"] for r in shard_for_process(stream, rank, 2)] for rank in (0, 1)]
    everything = [t.source + t.text for t in load_retrieval_dataset("fashioniq", root, "train").triplets]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(everything)


def test_real_fashioniq_annotations_with_a_few_images(fashioniq_annotations, tmp_path):
    from helpers import link_fashioniq_annotations, write_standin_images

    root = link_fashioniq_annotations(fashioniq_annotations, tmp_path / "fiq")
    with pytest.warns(UserWarning, match="images folder not found|skipped records"):
        assert main(["--dataset", "fashioniq", "--root", str(root), "--out", str(tmp_path / "none"),
                     "--splits", "val"]) == 2  # no image at all: a clear error, not an empty data set
    ids = json.loads((fashioniq_annotations / "image_splits" / "split.dress.val.json").read_text())
    pairs = json.loads((fashioniq_annotations / "captions" / "cap.dress.val.json").read_text())[:20]
    present = sorted({p[k] for p in pairs for k in ("candidate", "target")} | set(ids[:10]))
    write_standin_images(root / "images", present, size=8, ext=".jpg", link=True)
    out = tmp_path / "published"
    with pytest.warns(UserWarning, match="missing_gallery_image="):
        assert main(["--dataset", "fashioniq", "--root", str(root), "--out", str(out), "--splits", "val"]) == 0
    card = read_card(out)
    val = card.splits["val"]
    assert (card.protocol, card.eval_split, val.categories) == ("fashioniq", "val", ["dress", "shirt", "toptee"])
    assert val.gallery == len(present) and val.triplets >= 20 and val.missing_images > 10000
    assert val.skipped["missing_image"] > 5000 and f"| val | {len(present)} |" in (out / "README.md").read_text()
    with pytest.warns(UserWarning, match="skipped records"):
        original = load_retrieval_dataset("fashioniq", root, "val")
    _same_split(original, load_retrieval_dataset("published", out, "val"))
    assert {t.source for t in original.triplets} >= {p["candidate"] for p in pairs}
