"""Checkpoints: atomic save with a model card, strict load, errors naming files, mocked Hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from fashion_retrieval import checkpoints as hub
from fashion_retrieval.models import ModelConfig, RetrievalModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXTS = ["a red dress", "blue shirt"]
METRICS = {"dataset": "synthetic", "split": "test", "protocol": "synthetic",
           "recall": {"R@1": 12.5, "R@10": 40.0, "R@50": 70.25}}


def tiny() -> RetrievalModel:
    torch.manual_seed(0)
    cfg = ModelConfig(image_encoder="tiny_cnn", compositor="tirg", embed_dim=16,
                      text_kwargs={"word_dim": 8, "hidden": 12})
    return RetrievalModel(cfg, texts=TEXTS).eval()


@pytest.fixture()
def saved(tmp_path) -> tuple[RetrievalModel, Path]:
    model = tiny()
    out = hub.save_checkpoint(model, tmp_path / "ckpt", train_config={"lr": 0.01}, metrics=METRICS)
    return model, out


def outputs(model):
    torch.manual_seed(3)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return model.encode_query(images, ["red dress", "zzz"]), model.encode_target(images)


def test_checkpoint_folder_and_round_trip(saved):
    model, out = saved
    assert {"config.json", "model.safetensors", "README.md", "train_config.json", "metrics.json"} <= set(os.listdir(out))
    assert not [p for p in os.listdir(out.parent) if p.startswith(".")]  # no temp folders left
    loaded = hub.load_model(out)
    assert loaded.config == model.config and not loaded.training
    for a, b in zip(outputs(model), outputs(loaded), strict=True):
        assert torch.equal(a, b)


def test_model_card_has_model_index(saved):
    from huggingface_hub import ModelCard

    card = ModelCard.load(saved[1] / "README.md")
    data = card.data.to_dict()
    results = data["model-index"][0]["results"]
    values = {m["name"]: m["value"] for r in results for m in r["metrics"]}
    assert values == {"R@1": 12.5, "R@10": 40.0, "R@50": 70.25}
    assert data["library_name"] == "fashion_retrieval" and data["datasets"] == ["synthetic"]
    assert "How to load" in card.text and "Limitations" in card.text


def test_model_card_keeps_only_metrics(tmp_path):
    out = hub.save_checkpoint(tiny(), tmp_path / "c", metrics={"R@10": 5.0, "step": 100, "loss": 0.3},
                              dataset_name="fashioniq")
    card = (out / "README.md").read_text()
    assert "R@10" in card and "| step" not in card and "loss" not in card and "fashioniq" in card
    assert "Measured at training step 100." in card  # which step the figures are of


def test_save_over_existing_keeps_old_if_interrupted(saved, monkeypatch):
    model, out = saved
    before = (out / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hub, "build_model_card", boom)
    with torch.no_grad():
        model.image_proj.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        hub.save_checkpoint(model, out)
    assert (out / "model.safetensors").read_bytes() == before
    assert not [p for p in os.listdir(out.parent) if p.startswith(".")]
    monkeypatch.undo()
    hub.save_checkpoint(model, out)  # a later save replaces it
    assert (out / "model.safetensors").read_bytes() != before


def test_missing_files_are_named(saved, tmp_path):
    _, out = saved
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        hub.load_model(out)
    (out / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        hub.load_model(out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hub.load_model(tmp_path / "nope" / "ckpt")


def test_truncated_weights(saved):
    _, out = saved
    f = out / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match="model.safetensors.*truncated"):
        hub.load_model(out)


def test_missing_and_unexpected_weights_are_errors(saved):
    from safetensors.torch import load_file, save_file

    _, out = saved
    f = out / "model.safetensors"
    state = load_file(f)
    state.pop("null_text")
    state["extra.weight"] = torch.zeros(2)
    save_file(state, f)
    with pytest.raises(ValueError, match=r"model.safetensors does not match.*missing weights \['null_text'\].*unexpected weights \['extra.weight'\]"):
        hub.load_model(out)


def test_bad_config_is_named(saved):
    _, out = saved
    cfg = out / "config.json"
    cfg.write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        hub.load_model(out)
    cfg.write_text(json.dumps({"model_type": "bert", "hidden_size": 3}))
    with pytest.raises(ValueError, match="'bert' model, not a fashion_retrieval"):
        hub.load_model(out)
    raw = tiny().config.to_dict()
    raw["embed_dimm"] = 3
    cfg.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="config.json: unknown model config key.*embed_dimm"):
        hub.load_model(out)


def test_load_from_hub_repo_id_with_mocked_download(saved, monkeypatch):
    import huggingface_hub
    import huggingface_hub.hub_mixin

    model, out = saved
    calls = []

    def fake_download(repo_id, filename, revision=None, **kw):
        calls.append((repo_id, filename, revision))
        return str(out / filename)

    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = hub.load_model("someone/tirg-fashion", revision="v1")
    assert ("someone/tirg-fashion", "config.json", "v1") in calls
    assert ("someone/tirg-fashion", "model.safetensors", "v1") in calls
    for a, b in zip(outputs(model), outputs(loaded), strict=True):
        assert torch.equal(a, b)


def test_hub_download_failure_is_clear(monkeypatch):
    import huggingface_hub
    import huggingface_hub.hub_mixin

    def offline(*a, **k):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises((OSError, ValueError), match="someone/missing"):
        hub.load_model("someone/missing")


def test_push_to_hub_with_mocked_api(saved, monkeypatch):
    from helpers import autospec_hf_api

    _, out = saved
    hf_api = autospec_hf_api(monkeypatch)  # the real client's signatures, no network
    url = hub.push_to_hub(out, "me/m", token="t", private=True, commit_message="msg")
    hf_api.assert_called_once_with(token="t")
    api = hf_api.return_value
    api.create_repo.assert_called_once_with(repo_id="me/m", repo_type="model", private=True, exist_ok=True)
    upload = api.upload_folder.call_args.kwargs
    assert upload["folder_path"] == str(out) and upload["commit_message"] == "msg"
    assert upload["repo_id"] == "me/m" and upload["repo_type"] == "model"
    assert url.startswith("https://huggingface.co/me/m/commit/")  # CommitInfo.commit_url
    assert len(url.rsplit("/", 1)[1]) == 40
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        hub.push_to_hub(out, "me/m")
