"""RetrievalModel: the query/target interface, null embeddings, config round trip, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from fashion_retrieval.models import ModelConfig, RetrievalModel

TEXTS = ["a red dress", "a blue shirt with long sleeves", "green skirt"]


def tiny(compositor: str = "tirg", **kw) -> RetrievalModel:
    """A tiny model: tiny_cnn + small LSTM."""
    torch.manual_seed(0)
    cfg = ModelConfig(image_encoder="tiny_cnn", compositor=compositor, embed_dim=16,
                      text_kwargs={"word_dim": 8, "hidden": 12}, **kw)
    return RetrievalModel(cfg, texts=TEXTS)


@pytest.mark.parametrize("compositor", ["image_only", "text_only", "concat", "tirg", "combiner", "complex_rotation"])
def test_every_query_kind_is_normalised(compositor):
    model = tiny(compositor).eval()
    images = torch.randn(3, 3, 64, 64)
    for q in (model.encode_query(images, TEXTS), model.encode_query(images), model.encode_query(texts=TEXTS)):
        assert q.shape == (3, 16)
        assert torch.allclose(q.norm(dim=1), torch.ones(3), atol=1e-5)
    t = model.encode_target(images)
    assert t.shape == (3, 16) and torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)


def test_missing_modality_uses_null_embedding():
    model = tiny("concat").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        text_only = model.encode_query(texts=TEXTS[:2])
        null = model.null_image.expand(2, -1)
        manual = torch.nn.functional.normalize(model.compositor(null, model.encode_text(TEXTS[:2])), dim=-1)
        assert torch.allclose(text_only, manual, atol=1e-6)
        # the image-only query differs from the composed one: the text matters
        assert not torch.allclose(model.encode_query(images), model.encode_query(images, TEXTS[:2]))


def test_image_features_path_matches_pixels_path():
    model = tiny().eval()
    images = torch.randn(2, 3, 64, 64)
    feats = model.image_features(images)
    assert feats.shape == (2, 128)
    assert torch.allclose(model.encode_target(images), model.encode_target(image_features=feats))
    assert torch.allclose(model.encode_query(images, TEXTS[:2]), model.encode_query(None, TEXTS[:2], image_features=feats))


def test_bad_inputs_raise_clear_errors():
    model = tiny().eval()
    with pytest.raises(ValueError, match="needs images"):
        model.encode_query()
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.encode_query(torch.randn(2, 3, 64, 64), TEXTS)
    with pytest.raises(TypeError, match="list of str"):
        model.encode_query(texts="a red dress")
    with pytest.raises(ValueError, match=r"image_features must be \(B, 128\)"):
        model.encode_target(image_features=torch.randn(2, 7))
    with pytest.raises(ValueError, match="encode_target needs"):
        model.encode_target()


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval():
    model = tiny(freeze_image_encoder=True).train()
    assert not model.image_encoder.training
    loss = model.encode_query(torch.randn(4, 3, 64, 64), TEXTS + ["x"]).sum() + model.encode_target(torch.randn(4, 3, 64, 64)).sum()
    loss.backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert model.text_encoder.embedding.weight.grad is not None
    assert model.scale.requires_grad and model.scale.item() == 4.0


def test_modality_dropout_trains_null_embeddings():
    model = tiny("concat", modality_dropout=0.9).train()
    torch.manual_seed(1)
    model.encode_query(torch.randn(16, 3, 64, 64), TEXTS * 5 + ["a"]).sum().backward()
    assert model.null_image.grad is not None and model.null_text.grad is not None


def test_config_round_trip_and_strictness():
    cfg = ModelConfig(image_encoder="tiny_cnn", vocab=["<pad>", "<unk>", "red"], compositor_kwargs={"hidden": 8})
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown model config key.*'embed_dimm'"):
        ModelConfig.from_dict({"embed_dimm": 3})
    with pytest.raises(ValueError, match="'embed_dim' must be int"):
        ModelConfig.from_dict({"embed_dim": "512"})
    with pytest.raises(ValueError, match="'pretrained'"):
        ModelConfig.from_dict({"pretrained": "yes"})
    with pytest.raises(ValueError, match="'vocab'"):
        ModelConfig.from_dict({"vocab": [1, 2]})
    assert ModelConfig.from_dict({"normalize_scale": 4}).normalize_scale == 4.0


def test_unknown_encoder_names_list_valid_ones():
    with pytest.raises(ValueError, match="tiny_cnn"):
        RetrievalModel(ModelConfig(image_encoder="resnet19"), texts=TEXTS)
    with pytest.raises(ValueError, match="lstm"):
        RetrievalModel(ModelConfig(image_encoder="tiny_cnn", text_encoder="gru"), texts=TEXTS)
    with pytest.raises(ValueError, match="needs texts"):
        RetrievalModel(ModelConfig(image_encoder="tiny_cnn"))


@pytest.mark.parametrize("mid_grid", [0, 2])
def test_save_pretrained_round_trip(tmp_path, mid_grid):
    model = tiny(mid_grid=mid_grid, colour_features="lab_fg").eval()
    assert model.feature_dim == 128 + 64 * mid_grid**2 + model.colour.output_dim  # tiny_cnn's stage 3: 64 channels
    model.save_pretrained(tmp_path)
    loaded = RetrievalModel.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert loaded.config.vocab == model.config.vocab
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.encode_query(images, ["red dress", "unseen words"]),
                           model.encode_query(images, ["red dress", "unseen words"]))
        assert torch.equal(loaded.encode_target(images), model.encode_target(images))
        assert torch.equal(loaded.encode_query(texts=["blue"]), model.encode_query(texts=["blue"]))
