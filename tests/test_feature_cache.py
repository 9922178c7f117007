"""Batch embedding through a DataLoader, and the on-disk feature cache (keys, corruption)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from fashion_retrieval.models import ModelConfig, RetrievalModel
from fashion_retrieval.models import embedding as embedding_mod
from fashion_retrieval.models.embedding import embed_images, embed_images_skipping_bad
from fashion_retrieval.models.feature_cache import cached_image_features


@pytest.fixture(scope="module")
def model() -> RetrievalModel:
    torch.manual_seed(0)
    cfg = ModelConfig(image_encoder="tiny_cnn", compositor="concat", embed_dim=16,
                      text_kwargs={"word_dim": 8, "hidden": 8})
    return RetrievalModel(cfg, texts=["red dress"]).eval()


@pytest.fixture()
def images(tmp_path) -> list[str]:
    paths = []
    for i in range(7):
        img = Image.new("RGB", (80 + i, 70), (30 * i % 255, 100, 200 - 20 * i))
        img.paste((255, 255, 255), (5 * i, 10, 5 * i + 20, 40))
        p = tmp_path / f"img_{i}.png"
        img.save(p)
        paths.append(str(p))
    return paths


def reference(model, paths, target=True):
    """Embeddings computed by hand, one image at a time."""
    tf = model.transform()
    with torch.no_grad():
        pixels = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
        return model.encode_target(pixels) if target else model.image_features(pixels)


def test_embed_images_matches_one_by_one(model, images):
    out = embed_images(model, images, batch_size=3)
    assert out.shape == (7, 16)
    assert torch.allclose(out, reference(model, images), atol=1e-5)
    feats = embed_images(model, images, batch_size=4, target=False)
    assert feats.shape == (7, 128) and torch.allclose(feats, reference(model, images, False), atol=1e-5)
    pil = embed_images(model, [Image.open(p) for p in images[:2]])
    assert torch.allclose(pil, out[:2], atol=1e-5)


def test_embed_images_with_a_worker_process(model, images):
    out = embed_images(model, images, batch_size=4, num_workers=1)
    assert torch.allclose(out, reference(model, images), atol=1e-5)


def test_embed_images_restores_training_mode(model, images):
    model.train()
    try:
        embed_images(model, images[:2])
        assert model.training
    finally:
        model.eval()


def test_unreadable_image_is_named_or_skipped(model, images, tmp_path):
    from fashion_retrieval.data.images import ImageLoadError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        embed_images(model, [images[0], str(bad)])
    out, kept = embed_images_skipping_bad(model, [images[0], str(bad), images[1]], batch_size=2)
    assert kept == [0, 2] and out.shape == (2, 16)
    assert torch.allclose(out, reference(model, [images[0], images[1]]), atol=1e-5)
    with pytest.raises(TypeError, match="list"):
        embed_images(model, images[0])


def test_cache_hit_skips_the_backbone(model, images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = cached_image_features(model, images, cache, batch_size=4)
    assert first.shape == (7, 128)
    assert torch.allclose(first, reference(model, images, False), atol=1e-5)
    assert len(list(cache.glob("*.safetensors"))) == 1

    def no_compute(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(embedding_mod, "embed_images", no_compute)
    again = cached_image_features(model, images, cache)
    assert torch.equal(first, again)


def test_cache_key_changes_with_data_and_weights(model, images, tmp_path):
    cache = tmp_path / "cache"
    cached_image_features(model, images, cache)
    Image.new("RGB", (64, 64), (0, 0, 0)).save(images[3])  # new content, size and mtime
    st = os.stat(images[3])
    os.utime(images[3], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = cached_image_features(model, images, cache)
    assert torch.allclose(changed, reference(model, images, False), atol=1e-5)
    assert len(list(cache.glob("*.safetensors"))) == 2
    other = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", embed_dim=16,
                                       text_kwargs={"word_dim": 8, "hidden": 8}), texts=["x"]).eval()
    cached_image_features(other, images, cache)  # different backbone weights: a new entry
    assert len(list(cache.glob("*.safetensors"))) == 3
    with pytest.raises(FileNotFoundError, match="nope.png"):
        cached_image_features(model, images + [str(tmp_path / "nope.png")], cache)


def test_middle_stage_grid_is_cached_under_its_own_key(model, images, tmp_path):
    torch.manual_seed(0)
    grid = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", compositor="concat", embed_dim=16, mid_grid=2,
                                      text_kwargs={"word_dim": 8, "hidden": 8}), texts=["red dress"]).eval()
    grid.image_encoder.load_state_dict(model.image_encoder.state_dict())
    cache = tmp_path / "cache"
    plain = cached_image_features(model, images, cache)
    both = cached_image_features(grid, images, cache)
    assert len(list(cache.glob("*.safetensors"))) == 2
    assert both.shape == (len(images), grid.feature_dim) and grid.feature_dim == 128 + 64 * 4
    assert torch.allclose(both[:, :128], plain, atol=1e-5)
    assert torch.allclose(both, reference(grid, images, False), atol=1e-5)
    assert torch.equal(cached_image_features(grid, images, cache), both)  # a hit


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_cache_is_rebuilt_with_warning(model, images, tmp_path, damage):
    cache = tmp_path / "cache"
    good = cached_image_features(model, images, cache)
    (file,) = cache.glob("*.safetensors")
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-5] ^= 0xFF  # inside the feature values: only the checksum notices
    else:
        data = bytearray(b"\x00" * 10)
    file.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="is corrupt"):
        rebuilt = cached_image_features(model, images, cache)
    assert torch.allclose(rebuilt, good)
    assert torch.equal(cached_image_features(model, images, cache), rebuilt)  # and valid again


def test_text_features_in_batches_match_one_by_one(tmp_path, capsys):
    """The cache encodes texts in batches: the rows are each text's own features, in the
    order asked, within float tolerance of one text at a time."""
    from fashion_retrieval.models.feature_cache import cached_text_features

    texts = ["red", "make it a long blue dress with short sleeves and a collar", "shorter",
             "same but green", "is striped and has no sleeves at all", "navy"]
    model = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", pretrained=False, embed_dim=16,
                                       text_encoder="minilm"), texts=texts).eval()
    got = cached_text_features(model, texts, tmp_path, batch_size=4)
    with torch.no_grad():
        one_by_one = torch.cat([model.text_encoder([t]) for t in texts])
    assert got.shape == one_by_one.shape
    torch.testing.assert_close(got, one_by_one, atol=1e-5, rtol=1e-5)
    assert f"[features] text features of {len(texts)} texts (minilm): " in capsys.readouterr().err
    assert torch.equal(cached_text_features(model, texts, tmp_path, batch_size=4), got)  # from the file
    assert capsys.readouterr().err == ""  # a hit computes and logs nothing


def test_the_text_bank_encodes_only_texts_it_has_not_seen(tmp_path, capsys):
    """A second model's texts: the ones in the bank are read back as they were, the new ones
    encoded (once each) and added; rows come in the order asked, repeats included."""
    from safetensors import safe_open

    from fashion_retrieval.models.feature_cache import cached_text_features

    model = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", pretrained=False, embed_dim=16,
                                       text_encoder="minilm"), texts=["a"]).eval()
    first = cached_text_features(model, ["red", "a long blue dress", "navy"], tmp_path, batch_size=2)
    assert "text features of 3 texts" in capsys.readouterr().err
    second = cached_text_features(model, ["navy", "green please", "red", "green please"], tmp_path, batch_size=2)
    assert "text features of 1 texts" in capsys.readouterr().err  # only "green please"
    assert torch.equal(second[0], first[2]) and torch.equal(second[2], first[0])
    assert torch.equal(second[1], second[3])
    with torch.no_grad():
        torch.testing.assert_close(second[1], model.text_encoder(["green please"])[0], atol=1e-5, rtol=1e-5)
    (file,) = tmp_path.glob("text-*.safetensors")
    with safe_open(str(file), framework="pt") as f:
        assert sorted(json.loads(f.metadata()["texts"])) == ["a long blue dress", "green please", "navy", "red"]
    again = cached_text_features(model, ["green please", "a long blue dress"], tmp_path)
    assert capsys.readouterr().err == "" and torch.equal(again[0], second[1])
    assert cached_text_features(model, [], tmp_path).shape == (0, model.text_encoder.output_dim)

    data = bytearray(file.read_bytes())
    data[-40:] = b"\x00" * 40  # damaged rows
    file.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="is corrupt"):
        rebuilt = cached_text_features(model, ["red"], tmp_path)
    torch.testing.assert_close(rebuilt[0], first[0], atol=1e-5, rtol=1e-5)
