"""Every compositor: shapes, gradients, and what each one is supposed to do."""

from __future__ import annotations

import pytest
import torch

from fashion_retrieval.models.compositors import COMPOSITORS, build_compositor

NAMES = ["image_only", "text_only", "elementwise_sum", "concat", "tirg", "combiner", "complex_rotation"]


def test_all_expected_names_registered():
    assert sorted(COMPOSITORS.names()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_shapes(name):
    torch.manual_seed(0)
    comp = build_compositor(name, 16)
    img = torch.randn(5, 16, requires_grad=True)
    txt = torch.randn(5, 16, requires_grad=True)
    out = comp(img, txt)
    assert out.shape == (5, 16)
    out.square().sum().backward()
    if name != "text_only":
        assert img.grad is not None and img.grad.abs().sum() > 0
    if name != "image_only":
        assert txt.grad is not None and txt.grad.abs().sum() > 0
    for p in comp.parameters():
        assert p.grad is not None, f"{name}: a parameter got no gradient"


def test_single_input_compositors_ignore_the_other():
    img, txt = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.equal(build_compositor("image_only", 8)(img, txt), img)
    assert torch.equal(build_compositor("text_only", 8)(img, txt), txt)


@pytest.mark.parametrize("name", ["concat", "tirg", "combiner", "complex_rotation"])
def test_composed_output_depends_on_both_inputs(name):
    torch.manual_seed(0)
    comp = build_compositor(name, 8).eval()
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    base = comp(img, txt)
    assert not torch.allclose(base, comp(img, torch.randn(4, 8)))
    assert not torch.allclose(base, comp(torch.randn(4, 8), txt))


def test_tirg_is_gate_times_image_plus_residual():
    torch.manual_seed(0)
    comp = build_compositor("tirg", 8).eval()
    assert comp.weights.tolist() == [1.0, 10.0]
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    x = torch.cat([img, txt], 1)
    expected = torch.sigmoid(comp.gate(x)) * img + 10.0 * comp.residual(x)
    assert torch.allclose(comp(img, txt), expected, atol=1e-6)
    with torch.no_grad():  # no residual: the output is a gated image, never larger than it
        comp.weights[1] = 0.0
    assert (comp(img, txt).abs() <= img.abs() + 1e-6).all()


def test_combiner_mix_weight_is_in_unit_interval():
    torch.manual_seed(0)
    comp = build_compositor("combiner", 8).eval()
    img, txt = torch.randn(6, 8), torch.randn(6, 8)
    fused = torch.cat([comp.img_proj(img), comp.txt_proj(txt)], 1)
    lam = comp.mix(fused)
    assert lam.shape == (6, 1) and ((lam > 0) & (lam < 1)).all()
    assert torch.allclose(comp(img, txt), comp.fuse(fused) + lam * txt + (1 - lam) * img, atol=1e-6)


def test_complex_rotation_zero_angle_keeps_magnitudes():
    torch.manual_seed(0)
    comp = build_compositor("complex_rotation", 8).eval()
    with torch.no_grad():  # force theta = 0: the angle network outputs zeros
        comp.angles[-1].weight.zero_()
        comp.angles[-1].bias.zero_()
    img = torch.randn(3, 8)
    a = comp(img, torch.randn(3, 8))
    b = comp(img, torch.randn(3, 8))
    assert torch.allclose(a, b, atol=1e-6)  # text has no effect when every angle is 0


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="tirg") as err:
        build_compositor("tirgg", 8)
    assert "unknown compositor 'tirgg'" in str(err.value)


def test_bad_dim():
    with pytest.raises(ValueError, match="dim"):
        build_compositor("tirg", 0)
