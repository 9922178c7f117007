"""models/lite0.py: EfficientNet-Lite0 in plain torch equals timm's efficientnet_lite0 bit for bit
(evaluation, training, gradients), with timm's weight names in timm's order; a default model
loads without importing timm or torchvision."""

from __future__ import annotations

import pytest
import torch
from helpers import top_modules_after_loading

from fashion_retrieval.models.image_encoders import _lite0, _lite0_state_dict
from fashion_retrieval.models.lite0 import EfficientNetLite0


@pytest.fixture(scope="module")
def pair():
    import timm
    reference = timm.create_model("efficientnet_lite0", pretrained=False)
    reference.load_state_dict(_lite0_state_dict(reference))
    ours = _lite0(pretrained=True)
    return reference, ours


def test_same_names_in_the_same_order(pair):
    reference, ours = pair
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), reference.state_dict().values(),
                                                         strict=True))


@pytest.mark.parametrize("size", [128, 97])
def test_eval_outputs_equal_timm(pair, size):
    reference, ours = pair
    pixels = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        for x in (pixels, pixels.contiguous(memory_format=torch.channels_last)):
            assert torch.equal(ours.eval()(x), reference.eval()(x))  # ImageNet logits
            assert torch.equal(ours.forward_features(x), reference.forward_features(x))


def test_training_matches_timm_step_for_step(pair):
    """Fine-tuning the backbone: the same batch statistics, running averages and gradients."""
    import copy

    reference, ours = (copy.deepcopy(m) for m in pair)
    for m in (reference, ours):
        m.reset_classifier(0)
        m.train()
    x = torch.randn(6, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    a, b = reference(x), ours(x)
    assert a.shape == (6, 1280) and torch.equal(a, b)
    a.square().mean().backward()
    b.square().mean().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(reference.parameters(), ours.parameters(), strict=True))
    assert all(torch.equal(p, q) for p, q in zip(reference.buffers(), ours.buffers(), strict=True))


def test_random_weights_are_efficientnet_initialised():
    torch.manual_seed(0)
    model = EfficientNetLite0()
    assert torch.equal(model.bn1.weight, torch.ones(32)) and torch.equal(model.bn1.bias, torch.zeros(32))
    std = model.conv_head.weight.std().item()  # fan_out 1280: sqrt(2 / 1280) ~ 0.040
    assert 0.035 < std < 0.045
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(2, 3, 64, 64))).all()


def test_loading_a_default_model_imports_neither_timm_nor_torchvision(tmp_path):
    """The warm start's models load without timm (which imports torchvision and torch's compiler)."""
    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    model = RetrievalModel(ModelConfig(image_encoder="efficientnet_lite0", text_encoder="minilm", pretrained=False,
                                       embed_dim=16, freeze_text_encoder=True, mid_grid=2))
    save_checkpoint(model, tmp_path / "ck")
    use = "m.encode_target(image_features=torch.zeros(1, m.feature_dim))"
    assert top_modules_after_loading(tmp_path / "ck", use, ("timm", "torchvision")) == []
