"""What the start-up of the demo skips on a second start, and the start-up benchmark's stage rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts beside the package
    sys.path.insert(0, str(ROOT))


def test_complete_catalogue_is_not_planned_again(tmp_path, monkeypatch, capsys):
    from fashion_retrieval.data.synthetic import writers

    first = writers.write_catalog(tmp_path, products=12, workers=1)
    assert first["rendered"] == first["images"] > 0
    assert f"[render] {first['images']} images of 12 products (1 workers): " in capsys.readouterr().err

    def no_planning(*args, **kwargs):
        raise AssertionError("a complete catalogue was planned again")

    monkeypatch.setattr(writers, "build_catalog", no_planning)
    again = writers.write_catalog(tmp_path, products=12, workers=1)
    assert again == {**first, "rendered": 0, "skipped": True}
    with pytest.raises(AssertionError, match="planned again"):  # other parameters: planned and rendered
        writers.write_catalog(tmp_path, products=13, workers=1, overwrite=True)


def test_middle_stage_channels_are_probed_once_per_architecture(monkeypatch):
    from fashion_retrieval.models import image_encoders
    from fashion_retrieval.models.image_encoders import ImageEncoder, build_image_encoder

    monkeypatch.setattr(image_encoders, "_MID_CHANNELS", {})
    probes = []
    real = ImageEncoder._probe_mid_channels
    monkeypatch.setattr(ImageEncoder, "_probe_mid_channels", lambda self: probes.append(1) or real(self))
    a, b = build_image_encoder("tiny_cnn", pretrained=False), build_image_encoder("tiny_cnn", pretrained=False)
    with torch.no_grad():
        out = a(torch.zeros(1, 3, 64, 64), mid_grid=1)
    assert a.mid_channels() == b.mid_channels() == out.shape[1] - a.output_dim
    assert len(probes) == 1
    with pytest.raises(ValueError, match="named middle stage"):
        ImageEncoder("plain", torch.nn.Identity(), 3, a.preprocess).mid_channels()


def test_cold_stages_and_bound_rows(tmp_path):
    from benchmarks.bench_startup import bound_rows, cold_stages

    log = tmp_path / "app.log"
    log.write_text("[default] stage 1/3: rendering 24 products\n[render] 72 images of 24 products (2 workers): 1.5 s\n"
                   "[features] text features of 60 texts (minilm): 8.0 s\n"
                   "[features] image features of 51 images (tiny_cnn): 7.0 s\n"
                   "[features] image features of 12 images (tiny_cnn): 3.0 s\n[train] tirg: 4 steps: 2.5 s\n"
                   "* Running on local URL: x\n")
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "COMPLETE.json").write_text(json.dumps({"timings": {
        "tirg_train_s": 28.0, "tirg_index_s": 2.0, "tirg_s": 30.0, "total_s": 40.0}}))
    assert cold_stages(log, tmp_path) == {"render_s": 1.5, "text_features_s": 8.0, "image_features_s": 10.0,
                                          "training_s": 2.5, "indexing_s": 2.0, "total_build_s": 40.0}
    (tmp_path / "default" / "COMPLETE.json").write_text(json.dumps({"timings": {  # models trained side by side
        "training_s": 1.75, "tirg_train_s": 28.0, "tirg_index_s": 2.0, "total_s": 40.0}}))
    assert cold_stages(log, tmp_path)["training_s"] == 1.75  # the stage's wall time, not the models' sum
    parts = {"images": 72, "texts": 60, "image_s": 9.0, "text_s": 11.0}
    rows = bound_rows(warm=12.0, imports=10.0, cold=50.0, work=(20.0, parts))
    by_measure = {r.measure: r for r in rows}
    assert by_measure["cold start / bare work"].value == 2.5 and by_measure["cold start / bare work"].passed is False
    assert by_measure["warm start minus bare imports"].value == 2.0
    assert by_measure["warm start minus bare imports"].passed is True
    assert len(bound_rows(warm=12.0, imports=10.0)) == 2  # no cold start (--quick): imports rows only
