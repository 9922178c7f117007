"""CLIP4Cir as published, in two stages, on a tiny randomly initialised open_clip model.

Stage 1 fine-tunes both CLIP encoders through the element-wise sum; stage 2 trains only
the Combiner on the frozen stage-1 features. The reference is github.com/ABaldrati/CLIP4Cir
(src/clip_fine_tune.py, src/combiner_train.py, src/combiner.py, src/data_utils.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fashion_retrieval.data.transforms import ImageTransform, TargetPad
from fashion_retrieval.training.config import TrainConfig, merge
from fashion_retrieval.training.optim import build_optimizer
from fashion_retrieval.training.tasks import TaskModule
from fashion_retrieval.training.trainer import build_model

CONFIGS = Path(__file__).resolve().parent.parent / "training" / "configs"
TINY = "TinyRN-clip4cir-test"  # a ModifiedResNet + 1-layer text transformer, 32-d, 32 px
WIDTH = 32
TEXTS = ["make it red", "is longer", "has stripes and is blue", "same but green"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register the tiny open_clip architecture; returns the encoder spec ``open_clip:<name>``."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_cfg")
    (folder / f"{TINY}.json").write_text(json.dumps({
        "embed_dim": WIDTH,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(folder)
    return f"open_clip:{TINY}"


def stage(n: int, spec: str, **changes) -> TrainConfig:
    """The shipped stage-``n`` config on the tiny CLIP, no weights downloaded, no stage-1 run."""
    base = TrainConfig.load(CONFIGS / f"clip4cir_stage{n}_fashioniq.yaml")
    tiny = dict(
        init_from=None, batch_size=4, mixed_precision="no", model={"image_encoder": spec,
        "text_encoder": spec, "pretrained": False, "embed_dim": WIDTH},
    )
    return base.replace(**merge(tiny, changes))


def batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"source": torch.randn(4, 3, 32, 32, generator=g), "target": torch.randn(4, 3, 32, 32, generator=g),
            "text": TEXTS, "label": torch.arange(4)}


def run_steps(config: TrainConfig, steps: int = 3):
    """Build the model as the trainer does and take ``steps`` optimiser steps on random batches."""
    torch.manual_seed(0)
    model = build_model(config, TEXTS)
    module = TaskModule(model, config.task, config.loss)
    backbone = None if config.model.freeze_image_encoder else model.image_encoder
    optimizer, scheduler = build_optimizer(module, backbone, config)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    module.train()
    grads: dict[str, bool] = {}
    for step in range(steps):
        loss = module(batch(step))
        loss.backward()
        for name, p in model.named_parameters():
            grads[name] = grads.get(name, False) or (p.grad is not None and bool(p.grad.abs().sum() > 0))
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return model, optimizer, scheduler, before, grads


def changed(model: nn.Module, before: dict, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------- targetpad


def test_targetpad_pads_wide_and_tall_images_as_published() -> None:
    pad = TargetPad(1.25)
    # int((max(w, h) / 1.25 - side) / 2) on both ends of the short side, 0 on the long one.
    assert pad.padding(500, 200) == (0, 100)
    assert pad.padding(200, 500) == (100, 0)
    assert pad.padding(301, 100) == (0, 70)  # 301 / 1.25 = 240.8 -> int(70.4)
    wide = pad(Image.new("RGB", (500, 200), (255, 255, 255)))
    tall = pad(Image.new("RGB", (200, 500), (255, 255, 255)))
    assert wide.size == (500, 400) and tall.size == (400, 500)
    assert wide.getpixel((250, 0)) == (0, 0, 0) and wide.getpixel((250, 99)) == (0, 0, 0)
    assert wide.getpixel((250, 100)) == (255, 255, 255) and wide.getpixel((0, 200)) == (255, 255, 255)
    assert tall.getpixel((99, 250)) == (0, 0, 0) and tall.getpixel((100, 250)) == (255, 255, 255)


def test_targetpad_leaves_near_square_images_alone() -> None:
    pad = TargetPad(1.25)
    img = Image.new("RGB", (100, 110), (255, 255, 255))
    assert pad.padding(100, 110) == (0, 0) and pad(img) is img
    assert pad.padding(124, 100) == (0, 0)  # ratio 1.24 < 1.25


def test_targetpad_transform_keeps_the_black_bands_and_does_not_augment() -> None:
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    img = Image.new("RGB", (500, 200), (255, 255, 255))
    eval_t = ImageTransform(40, mean, std, mode="targetpad", target_ratio=1.25)
    x = eval_t(img)  # padded to 500 x 400, resized to 50 x 40, centre crop 40 x 40
    assert x.shape == (3, 40, 40)
    black = (0 - torch.tensor(mean)) / torch.tensor(std)
    white = (1 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(x[:, 0, 20], black, atol=1e-3)  # top band: 100 / 400 of 40 rows = 10
    assert torch.allclose(x[:, 20, 20], white, atol=1e-3)
    assert torch.allclose(x[:, 39, 20], black, atol=1e-3)
    train_t = ImageTransform(40, mean, std, train=True, mode="targetpad", target_ratio=1.25)
    assert torch.equal(train_t(img), x)  # published: no random crop, no flip
    assert torch.allclose(ImageTransform(40, mean, std)(img)[:, 0, 20], white, atol=1e-3)  # resize_crop: no band
    assert eval_t.config()["mode"] == "targetpad" and "mode" not in ImageTransform(40).config()
    with pytest.raises(ValueError, match="preprocessing mode"):
        ImageTransform(40, mode="squash")


def test_model_transform_follows_the_config(tiny_clip: str) -> None:
    model = build_model(stage(2, tiny_clip), TEXTS)
    t = model.transform(train=True)
    assert (t.mode, t.target_ratio, t.size) == ("targetpad", 1.25, 32)
    assert t.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # CLIP's, from open_clip


# ----------------------------------------------------------------------------- stage 2


def test_stage2_trains_only_the_combiner(tiny_clip: str) -> None:
    model, optimizer, scheduler, before, grads = run_steps(stage(2, tiny_clip))
    assert not any(changed(model, before, "image_encoder.").values())  # buffers included
    assert not any(changed(model, before, "text_encoder.").values())
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    comp = changed(model, before, "compositor.")
    assert comp and all(comp.values()), [k for k, v in comp.items() if not v]
    assert all(grads[f"compositor.{n}"] for n, _ in model.compositor.named_parameters())
    assert isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW)
    assert [g["lr"] for g in optimizer.param_groups] == [2e-5]  # constant after 3 steps
    assert optimizer.param_groups[0]["weight_decay"] == 0.0
    assert scheduler.get_last_lr() == [2e-5]


def test_stage2_combiner_has_the_published_shapes_and_fixed_scale(tiny_clip: str) -> None:
    model = build_model(stage(2, tiny_clip), TEXTS)
    d = model.config.embed_dim
    assert d == WIDTH == model.image_encoder.output_dim == model.text_encoder.output_dim
    c = model.compositor
    shapes = {n: tuple(p.shape) for n, p in c.named_parameters() if n.endswith("weight")}
    assert shapes == {
        "img_proj.0.weight": (4 * d, d), "txt_proj.0.weight": (4 * d, d),  # projection_dim = 4 d
        "fuse.0.weight": (8 * d, 8 * d), "fuse.3.weight": (d, 8 * d),  # hidden_dim = 8 d
        "mix.0.weight": (8 * d, 8 * d), "mix.3.weight": (1, 8 * d),  # the dynamic scalar
    }
    assert [m.p for m in c.modules() if isinstance(m, nn.Dropout)] == [0.5] * 4
    # The scale is a buffer fixed at 100, not a parameter.
    assert "scale" not in dict(model.named_parameters()) and model.scale.item() == pytest.approx(100.0)
    assert "scale" in dict(model.named_buffers())
    # No projection layers between CLIP and the combiner, on either side.
    assert isinstance(model.image_proj, nn.Identity) and isinstance(model.text_proj, nn.Identity)
    owners = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert owners == {"image_encoder", "text_encoder", "compositor", "null_image", "null_text"}


def test_stage2_query_is_the_published_combiner_output(tiny_clip: str) -> None:
    model = build_model(stage(2, tiny_clip), TEXTS).eval()
    px = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        img, txt = model.image_encoder(px), model.text_encoder(TEXTS)  # raw CLIP features (B, d)
        c = model.compositor
        fused = torch.cat([c.img_proj(img), c.txt_proj(txt)], dim=1)
        lam = c.mix(fused)
        expected = F.normalize(c.fuse(fused) + lam * txt + (1 - lam) * img, dim=-1)
        assert torch.allclose(model.encode_query(px, TEXTS), expected, atol=1e-5)
        assert torch.allclose(model.encode_target(px), F.normalize(img, dim=-1), atol=1e-5)


# ----------------------------------------------------------------------------- stage 1


def test_stage1_updates_both_encoders_through_the_sum(tiny_clip: str) -> None:
    config = stage(1, tiny_clip)
    model, optimizer, _, before, grads = run_steps(config)
    img, txt = changed(model, before, "image_encoder."), changed(model, before, "text_encoder.")
    assert any(img.values()) and any(txt.values())
    # CLIP stays in eval mode (clip_model.eval()): the BatchNorm statistics do not move.
    stats = [k for k in img if "running_" in k]
    assert stats and not any(img[k] for k in stats)
    assert not model.image_encoder.training and model.training
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:  # the image backbone's group too: one learning rate
        assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-6, (0.9, 0.999), 1e-7, 0.01)
    assert grads["image_encoder.body.visual.conv1.weight"]
    model.eval()
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = F.normalize(model.image_encoder(px) + model.text_encoder(TEXTS[:2]), dim=-1)
        assert torch.allclose(model.encode_query(px, TEXTS[:2]), expected, atol=1e-5)


def test_projection_none_needs_one_width(tiny_clip: str) -> None:
    with pytest.raises(ValueError, match="one width"):
        build_model(stage(2, tiny_clip, model={"text_encoder": "lstm", "text_kwargs": {"hidden": 16}}), TEXTS)


# ----------------------------------------------------------------------------- init_from


def test_stage2_starts_from_stage1_encoders(tiny_clip: str, tmp_path: Path) -> None:
    from fashion_retrieval.checkpoints import save_checkpoint

    torch.manual_seed(1)
    stage1 = build_model(stage(1, tiny_clip), TEXTS)
    with torch.no_grad():  # stands for the fine-tuning
        for p in stage1.parameters():
            p.add_(0.01)
    save_checkpoint(stage1, tmp_path / "run1" / "final")
    for source in (tmp_path / "run1" / "final", tmp_path / "run1"):  # checkpoint or run folder
        torch.manual_seed(2)
        model = build_model(stage(2, tiny_clip, init_from=str(source)), TEXTS)
        for part in ("image_encoder", "text_encoder"):
            mine, theirs = getattr(model, part).state_dict(), getattr(stage1, part).state_dict()
            assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
        assert model.config.compositor == "combiner" and model.config.freeze_text_encoder
    with pytest.raises(FileNotFoundError, match="train the run it comes from first"):
        build_model(stage(2, tiny_clip, init_from=str(tmp_path / "runs" / "stage1" / "final")), TEXTS)
    other = f"{tiny_clip}:"  # the same architecture under another name: still refused
    with pytest.raises(ValueError, match="its image_encoder is"):
        build_model(stage(2, tiny_clip, init_from=str(tmp_path / "run1"), model={"image_encoder": other}), TEXTS)


def test_stage2_run_reads_both_sides_from_caches(tiny_clip: str, tmp_path: Path) -> None:
    """A real (tiny) stage-2 run: encoders from a stage-1 checkpoint, image and text features cached."""
    from test_training import make_tiny_fashioniq

    from fashion_retrieval.checkpoints import load_model, save_checkpoint
    from fashion_retrieval.data.fashioniq import load_fashioniq
    from fashion_retrieval.training import train
    from fashion_retrieval.training.tasks import build_examples
    from fashion_retrieval.training.trainer import frozen_text_inputs

    root = make_tiny_fashioniq(tmp_path / "fiq")
    torch.manual_seed(3)
    stage1 = build_model(stage(1, tiny_clip), TEXTS)
    save_checkpoint(stage1, tmp_path / "stage1" / "final")
    out = tmp_path / "stage2"
    config = stage(2, tiny_clip, dataset="fashioniq", data_root=str(root), categories=None,
                   init_from=str(tmp_path / "stage1"), max_steps=3, batch_size=8, eval_every=100,
                   save_every=100, log_every=1, num_workers=0, eval_batch_size=16,
                   output_dir=str(out), feature_cache_dir=str(tmp_path / "features"))
    assert config.train_caption_mode == "random"
    final = train(config)
    cached = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert any(n.startswith("open_clip_") for n in cached)  # image features
    (text_cache,) = [tmp_path / "features" / n for n in cached if n.startswith("text-")]
    from safetensors import safe_open

    with safe_open(str(text_cache), framework="pt") as f:
        rows = f.get_tensor("features").shape[0]
    # Every text training or evaluation gives the frozen encoder was encoded once, up front:
    # per triplet "C1 and c2", "C2 and c1", "C1", "C2" (CLIP4Cir's random captions); the eval
    # texts are CLIP4Cir's validation text "C1 and c2" (caption_mode clip4cir), the first form.
    train_set = load_fashioniq(root, "train", caption_mode="clip4cir")
    val_set = load_fashioniq(root, "val", caption_mode="clip4cir")
    expected = frozen_text_inputs(build_examples(train_set, "composed"), val_set, config)
    assert rows == len(expected)
    assert {"Make it green and same shape", "Same shape and make it green", "Make it green",
            "Same shape"} <= set(expected)
    assert "make it green and same shape" not in expected  # the raw join is never ranked
    trained = load_model(final)
    for part in ("image_encoder", "text_encoder"):
        mine, theirs = getattr(trained, part).state_dict(), getattr(stage1, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
    assert trained.config.projection == "none" and trained.config.preprocess == "targetpad"
    assert "scale" not in dict(trained.named_parameters()) and trained.scale.item() == pytest.approx(100.0)


# ----------------------------------------------------------------------------- configs


def test_configs_carry_the_reference_settings() -> None:
    s1 = TrainConfig.load(CONFIGS / "clip4cir_stage1_fashioniq.yaml")
    s2 = TrainConfig.load(CONFIGS / "clip4cir_stage2_fashioniq.yaml")
    for c in (s1, s2):
        assert (c.model.image_encoder, c.model.text_encoder) == ("open_clip:RN50x4:openai",) * 2
        assert (c.model.projection, c.model.preprocess, c.model.target_ratio) == ("none", "targetpad", 1.25)
        assert (c.loss, c.temperature, c.model.learn_scale) == ("batch_classification", 0.01, False)
        assert (c.lr_schedule, c.warmup_steps, c.mixed_precision, c.model.embed_dim) == ("constant", 0, "fp16", 640)
        assert c.dataset == "fashioniq" and c.eval_split == "val" and c.train_caption_mode == "random"
    # clip_fine_tune.py: both encoders, element-wise sum, AdamW lr 2e-6 betas (0.9, 0.999)
    # eps 1e-7 (torch's weight decay 0.01), CLIP in eval mode; README: batch 128, 100 epochs.
    assert (s1.model.compositor, s1.model.freeze_image_encoder, s1.model.freeze_text_encoder) == ("elementwise_sum", False, False)
    assert (s1.optimizer, s1.lr, s1.adam_eps, s1.weight_decay, s1.backbone_lr_scale) == ("adamw", 2e-6, 1e-7, 0.01, 1.0)
    assert s1.model.encoders_eval_mode and s1.batch_size == 128 and s1.max_steps == 100 * (18000 // 128)
    # combiner_train.py: frozen CLIP, Combiner(640, 2560, 5120), Adam lr 2e-5; README: batch 4096, 300 epochs.
    assert (s2.model.compositor, s2.model.freeze_image_encoder, s2.model.freeze_text_encoder) == ("combiner", True, True)
    assert s2.model.compositor_kwargs == {"proj_factor": 4, "hidden_factor": 8, "dropout": 0.5}
    assert (s2.optimizer, s2.lr, s2.weight_decay) == ("adam", 2e-5, 0.0)
    # --save-best on both stages; stage 2 starts from stage 1's best CLIP (--clip-model-path tuned_clip_best.pt)
    assert s1.save_best == s2.save_best == "avg"
    assert s2.cache_features and s2.init_from == "runs/clip4cir_stage1_fashioniq/best" == s1.output_dir + "/best"
    assert s2.batch_size == 4096 and s2.max_steps == 300 * (18000 // 4096)
