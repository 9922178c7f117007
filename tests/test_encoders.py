"""Image and text encoders and the word vocabulary. No network: pretrained=False or offline weights."""

from __future__ import annotations

import json
import os

import pytest
import torch

from fashion_retrieval.models.image_encoders import (
    IMAGE_ENCODERS,
    build_image_encoder,
    efficientnet_lite0_classifier,
    grid_descriptor,
)
from fashion_retrieval.models.text_encoders import TEXT_ENCODERS, build_text_encoder
from fashion_retrieval.models.vocab import Vocabulary, tokenize

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------------------- vocab


def test_tokenize_normalises_and_never_crashes():
    assert tokenize("Like THIS, but  Blue-ish!") == ["like", "this", "but", "blue", "ish"]
    assert tokenize("ｆｕｌｌ width") == ["full", "width"]  # NFKC
    assert tokenize("") == [] and tokenize("!!! 🎉\x00\x07") == []
    assert tokenize("красное платье 赤いドレス") == ["красное", "платье", "赤いドレス"]
    assert len(tokenize("word " * 10_000)) == 128
    with pytest.raises(TypeError):
        tokenize(None)  # type: ignore[arg-type]


def test_vocabulary_build_encode_round_trip(tmp_path):
    voc = Vocabulary.build(["red dress", "red shirt", "blue"], min_count=1)
    assert voc.words[:3] == ["<pad>", "<unk>", "red"]
    assert voc.encode("red unknownword") == [2, voc.unk_id]
    assert voc.encode("") == [voc.unk_id] and voc.encode("🎉") == [voc.unk_id]
    assert Vocabulary.build(["red dress", "red shirt"], min_count=2).words == ["<pad>", "<unk>", "red"]
    again = Vocabulary.from_json(voc.to_json())
    assert again.words == voc.words
    voc.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words == voc.words
    (tmp_path / "bad.json").write_text("[1,2]")
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "b"])


# ---------------------------------------------------------------------- image encoders


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "efficientnet_b0", "mobilenet_v3_large"])
def test_image_encoders_build_offline(name):
    torch.manual_seed(0)
    enc = build_image_encoder(name, pretrained=False).eval()
    size = enc.preprocess.size
    with torch.no_grad():
        out = enc(torch.randn(2, 3, size, size))
    assert out.shape == (2, enc.output_dim) and enc.name == name
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "efficientnet_b0", "mobilenet_v3_large", "vgg16",
                                  "inception_v3", "densenet161"])
def test_middle_stage_grid_is_the_named_stage_pooled_by_hand(name):
    """mid_grid appends the middle stage's map, cell-pooled and scaled, computed here by hand
    with a hook; the pooled features before it are unchanged."""
    torch.manual_seed(0)
    enc = build_image_encoder(name, pretrained=False).eval()
    size = enc.preprocess.size
    x = torch.randn(2, 3, size, size)
    seen = []
    stage = enc.body.get_submodule(enc.mid_stage)
    handle = stage.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        plain = enc(x)
        both = enc(x, mid_grid=3)
    handle.remove()
    fmap = seen[-1]  # (B, C, H, W), stride 16 of the input
    assert fmap.dim() == 4 and fmap.shape[2] >= 3
    assert both.shape == (2, enc.output_dim + fmap.shape[1] * 9) and enc.mid_channels() == fmap.shape[1]
    assert torch.allclose(both[:, : enc.output_dim], plain, atol=1e-5)
    grid = both[:, enc.output_dim :].view(2, fmap.shape[1], 3, 3)
    h, w = fmap.shape[2], fmap.shape[3]
    for i in range(3):
        for j in range(3):  # adaptive pooling's cell bounds: floor(i h / 3) .. ceil((i + 1) h / 3)
            cell = fmap[:, :, (i * h) // 3 : -((-(i + 1) * h) // 3), (j * w) // 3 : -((-(j + 1) * w) // 3)].mean((2, 3))
            want = cell / cell.norm(dim=1, keepdim=True) * fmap.shape[1] ** 0.5
            assert torch.allclose(grid[:, :, i, j], want, atol=1e-4)
    assert len(stage._forward_hooks) == 0  # the encoder's hook is removed after each call


def test_grid_descriptor_scale_and_errors():
    fmap = torch.rand(4, 10, 8, 8) * 1000
    g = grid_descriptor(fmap, 2).view(4, 10, 4)
    assert torch.allclose((g**2).mean(1), torch.ones(4, 4), atol=1e-5)  # unit RMS per channel in each cell
    assert torch.allclose(grid_descriptor(fmap * 7, 2), grid_descriptor(fmap, 2), atol=1e-5)
    from fashion_retrieval.models import ModelConfig

    for bad in (-1, 17, 2.5, True):
        with pytest.raises(ValueError, match="mid_grid"):
            ModelConfig(mid_grid=bad)


def test_middle_stage_grid_needs_a_convolutional_stage(tiny_clip):
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    with pytest.raises(ValueError, match="middle stage.*mid_grid=0"):
        RetrievalModel(ModelConfig(image_encoder=tiny_clip, mid_grid=2, pretrained=False), texts=["a"])


def test_registry_lists_all_names_and_rejects_unknown():
    expected = {"efficientnet_lite0", "resnet18", "resnet50", "densenet161", "vgg16", "inception_v3",
                "mobilenet_v3_large", "tiny_cnn", "open_clip:<...>"} | {f"efficientnet_b{i}" for i in range(5)}
    assert set(IMAGE_ENCODERS.names()) == expected
    with pytest.raises(ValueError, match="unknown image encoder 'resnet19'.*efficientnet_lite0"):
        build_image_encoder("resnet19")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_image_encoder("tiny_cnn")(torch.randn(3, 64, 64))


def test_tiny_cnn_init_follows_torch_rng():
    torch.manual_seed(5)
    a = build_image_encoder("tiny_cnn").state_dict()
    torch.manual_seed(5)
    b = build_image_encoder("tiny_cnn").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchvision_download_failure_names_the_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="could not download.*resnet18.*efficientnet_lite0.*pretrained=False"):
        build_image_encoder("resnet18", pretrained=True)


@pytest.fixture(scope="module")
def lite0():
    return build_image_encoder("efficientnet_lite0").eval()


def test_efficientnet_lite0_real_weights_are_deterministic(lite0):
    assert lite0.output_dim == 1280 and lite0.preprocess.size == 224
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = lite0(x), lite0(x)
        c = build_image_encoder("efficientnet_lite0").eval()(x)  # a fresh build: same weights
    assert a.shape == (2, 1280) and torch.equal(a, b) and torch.allclose(a, c)
    random = build_image_encoder("efficientnet_lite0", pretrained=False)
    assert not torch.equal(random.state_dict()["body.conv_stem.weight"], lite0.state_dict()["body.conv_stem.weight"])


def test_efficientnet_lite0_classifies_photos_sensibly():
    """The packaged weights are real ImageNet weights: scikit-learn's sample photos get the right classes."""
    from PIL import Image
    from sklearn import datasets
    from torchvision import transforms as T

    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    photos = [tf(Image.fromarray(datasets.load_sample_image(n))) for n in ("china.jpg", "flower.jpg")]
    model = efficientnet_lite0_classifier()
    with torch.no_grad():
        top5 = model(torch.stack(photos)).topk(5).indices  # (2, 5)
    assert top5[0, 0].item() == 698  # "palace": a Chinese temple building
    assert 985 in top5[1].tolist()  # "daisy": a flower close-up


# ------------------------------------------------------------------------ text encoders


def test_text_registry_names():
    assert set(TEXT_ENCODERS.names()) == {"lstm", "minilm", "hf:<...>", "open_clip:<...>"}
    with pytest.raises(ValueError, match="unknown text encoder 'gru'.*lstm"):
        build_text_encoder("gru")


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_lstm_encoder(pooling):
    torch.manual_seed(0)
    enc = build_text_encoder("lstm", texts=["a red dress", "blue shirt"], word_dim=8, hidden=12, pooling=pooling).eval()
    texts = ["a red dress", "", "never seen words 🎉", "x " * 1000]
    out = enc(texts)
    assert out.shape == (4, 12) and torch.isfinite(out).all()
    # padding must not change a text's embedding: alone or in a batch with a longer text
    assert torch.allclose(enc(["a red dress"]), enc(["a red dress", "blue shirt blue shirt blue"])[:1], atol=1e-6)
    with pytest.raises(TypeError, match="list of str"):
        enc("a red dress")
    with pytest.raises(ValueError, match="needs texts"):
        build_text_encoder("lstm")


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder("minilm").eval()


def test_minilm_offline_is_a_real_sentence_encoder(minilm):
    assert minilm.output_dim == 384
    with torch.no_grad():
        e = torch.nn.functional.normalize(minilm(["a red dress", "a crimson gown", "a laptop computer", ""]), dim=-1)
    assert e.shape == (4, 384) and torch.isfinite(e).all()
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1  # meaning, not random weights
    with torch.no_grad():
        long = minilm(["word " * 5000])  # truncated, not a crash
    assert long.shape == (1, 384)


def test_hf_prefix_with_local_folder_and_random_init():
    from fashion_retrieval.models.text_encoders import minilm_path

    enc = build_text_encoder(f"hf:{minilm_path()}", pretrained=False)
    assert enc.output_dim == 384 and enc.name.startswith("hf:")
    assert enc(["hello"]).shape == (1, 384)


def test_text_encoders_say_which_words_they_cannot_read(minilm):
    """``unknown_words``: for the LSTM the words outside its vocabulary, None when it reads
    none (symbols only included); for a word-piece encoder the words it reads only as
    [UNK], after its spelling correction (a misspelt word is read)."""
    lstm = build_text_encoder("lstm", texts=["a red dress", "blue shirt"])
    assert lstm.unknown_words("A red, striped dress!") == ["striped"]
    assert lstm.unknown_words("blue shirt") == []
    assert all(lstm.unknown_words(text) is None for text in ("zzzz qqqq", "🔥🔥", "   "))
    speller = build_text_encoder("minilm", texts=["a red dress"], spelling=True)
    for enc in (minilm, speller):
        assert enc.unknown_words("a red dresss with 🔥 and አማርኛ") == ["🔥", "አማርኛ"]
        assert enc.unknown_words("🔥 🎉") is None
    assert speller.speller("a red dresss") == "a red dress" and speller.unknown_words("a red dresss") == []


@pytest.fixture()
def tiny_clip(tmp_path):
    import open_clip

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "TinyClipTest.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(tmp_path / "TinyClipTest.json"))
    return "open_clip:TinyClipTest"


def test_open_clip_towers_offline(tiny_clip):
    img = build_image_encoder(tiny_clip, pretrained=False).eval()
    assert img.output_dim == 32 and img.preprocess.size == 32
    assert img(torch.randn(2, 3, 32, 32)).shape == (2, 32)
    txt = build_text_encoder(tiny_clip).eval()
    assert txt.output_dim == 32 and txt(["a red dress", ""]).shape == (2, 32)
    assert txt.clip.visual is None  # the image tower is not kept twice
    with pytest.raises(ValueError, match="has no pretrained tag 'laion2b_s34b_b79k'"):
        build_image_encoder(tiny_clip + ":laion2b_s34b_b79k")
    with pytest.raises(RuntimeError, match="could not load open_clip weights.*efficientnet_lite0"):
        build_image_encoder("open_clip:RN50:openai")  # a real tag whose weights need the network
    with pytest.raises(ValueError, match="unknown open_clip model"):
        build_image_encoder("open_clip:NoSuchModel")


def _quick_gelus(module: torch.nn.Module) -> int:
    import open_clip

    return sum(isinstance(m, open_clip.transformer.QuickGELU) for m in module.modules())


def test_open_clip_gets_its_tags_activation_with_or_without_weights(tmp_path):
    """OpenAI's CLIP weights were trained with QuickGELU: a model built for the tag uses it even
    with random weights (a rebuild before loading a checkpoint), and the checkpoint records it."""
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.models import ModelConfig, RetrievalModel
    from fashion_retrieval.models.image_encoders import open_clip_activation

    assert open_clip_activation("open_clip:RN50:openai") == "quick_gelu"
    assert open_clip_activation("open_clip:RN50") == "gelu"
    assert open_clip_activation("open_clip:ViT-B-32:laion2b_s34b_b79k") == "gelu"
    txt = build_text_encoder("open_clip:RN50:openai", pretrained=False)
    assert txt.activation == "quick_gelu" and _quick_gelus(txt) > 0
    assert _quick_gelus(build_text_encoder("open_clip:RN50", pretrained=False)) == 0
    cfg = ModelConfig(image_encoder="open_clip:RN50:openai", text_encoder="open_clip:RN50:openai",
                      compositor="combiner", projection="none", pretrained=False)
    model = RetrievalModel(cfg)
    assert model.config.clip_activation == {"open_clip:RN50:openai": "quick_gelu"}
    model.save_pretrained(tmp_path / "ck")
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["clip_activation"] == {"open_clip:RN50:openai": "quick_gelu"}
    again = load_model(str(tmp_path / "ck"))
    assert _quick_gelus(again.text_encoder) == _quick_gelus(model.text_encoder) > 0
    with pytest.raises(ValueError, match="trained with activation 'quick_gelu'"):
        RetrievalModel({**cfg.to_dict(), "clip_activation": {"open_clip:RN50:openai": "gelu"}})


def test_open_clips_quickgelu_mismatch_warning_is_an_error(monkeypatch):
    import warnings

    import open_clip

    real = open_clip.create_model

    def warns(*args, **kwargs):
        warnings.warn("QuickGELU mismatch between final model config (quick_gelu=False) and pretrained tag",
                      UserWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model", warns)
    with pytest.raises(ValueError, match="wrong activation.*QuickGELU mismatch"):
        build_text_encoder("open_clip:RN50:openai", pretrained=False)
