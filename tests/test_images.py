"""load_image on every kind of file a catalogue holds, and ImageTransform."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from helpers import solid_image
from PIL import Image, ImageFile

from fashion_retrieval.data.images import ImageLoadError, load_image
from fashion_retrieval.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform


def _jpeg_bytes(size=(64, 48), color=(10, 200, 30), **save_kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", **save_kw)
    return buf.getvalue()


def test_rgb_jpeg_from_path_bytes_file(tmp_path):
    data = _jpeg_bytes()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    for src in (path, str(path), data, io.BytesIO(data), open(path, "rb")):
        img = load_image(src)
        assert img.mode == "RGB" and img.size == (64, 48)
        r, g, b = img.getpixel((5, 5))
        assert g > 150 and r < 60 and b < 80


@pytest.mark.parametrize(
    "content, problem",
    [(None, "file not found"), (b"", "empty file"), (b"hello, I am text\n", "not an image")],
)
def test_bad_files_name_source_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=problem) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("lenient", [False, True])
def test_truncated_jpeg_detected_even_when_pil_is_lenient(tmp_path, monkeypatch, lenient):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noisy.save(buf, "JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(path)
    assert "cut.jpg" in str(info.value)


def test_truncated_png_detected(tmp_path):
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        load_image(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # A 4000x4000 PNG of zeros compresses to a few KB; with max_pixels=1e6 it must be refused.
    buf = io.BytesIO()
    Image.new("L", (4000, 4000), 0).save(buf, "PNG")
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageLoadError, match="too many pixels"):
        load_image(buf.getvalue(), max_pixels=1_000_000)
    assert load_image(buf.getvalue(), max_pixels=20_000_000).size == (4000, 4000)


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "YCbCr"])
def test_modes_convert_to_rgb(mode):
    img = solid_image(16, (200, 30, 30), mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "PNG"
    buf = io.BytesIO()
    img.save(buf, fmt)
    out = load_image(buf.getvalue())
    assert out.mode == "RGB" and out.size == (16, 16)
    if mode in ("P", "CMYK", "YCbCr"):
        r, g, b = out.getpixel((8, 8))
        assert r > 150 and g < 80 and b < 80


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_composited_on_white(mode):
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((0, 0), (255, 0, 0, 255))
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
        img.info["transparency"] = img.getpixel((1, 1))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = load_image(buf.getvalue())
    assert out.getpixel((4, 4)) == (255, 255, 255)
    assert out.getpixel((0, 0)) != (255, 255, 255)


def test_sixteen_bit_keeps_range():
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    img = Image.fromarray(arr)  # I;16
    assert img.mode.startswith("I;16")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    for src in (img, buf.getvalue()):
        out = load_image(src)
        assert out.mode == "RGB"
        assert out.getpixel((3, 3)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    assert load_image(buf.getvalue()).size == (20, 40)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = load_image(buf.getvalue())
    r, g, b = out.getpixel((5, 5))
    assert r > 200 and b < 50


def test_one_pixel_and_arrays_and_pil():
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (1, 2, 3)).save(buf, "PNG")
    assert load_image(buf.getvalue()).getpixel((0, 0)) == (1, 2, 3)
    assert load_image(np.zeros((4, 5, 3), np.uint8)).size == (5, 4)
    assert load_image(np.zeros((4, 5), np.uint8)).mode == "RGB"
    assert load_image(np.zeros((4, 5, 4), np.uint8)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(Image.new("L", (3, 3), 7)).getpixel((1, 1)) == (7, 7, 7)
    with pytest.raises(ImageLoadError, match="uint8"):
        load_image(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ImageLoadError, match="int"):
        load_image(12)


def test_eval_transform_shape_and_normalisation():
    t = ImageTransform(32)
    img = Image.new("RGB", (80, 40), (255, 255, 255))
    x = t(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[:, 16, 16], expected, atol=1e-4)
    assert t(Image.new("RGBA", (10, 30), (0, 0, 0, 0))).shape == (3, 32, 32)


def test_eval_center_crop_keeps_middle():
    img = Image.new("RGB", (90, 30), (0, 0, 0))
    img.paste((255, 255, 255), (30, 0, 60, 30))  # white middle third
    x = ImageTransform(16, mean=(0, 0, 0), std=(1, 1, 1))(img)
    assert type(x) is torch.Tensor
    assert x[:, :, 2:-2].min() > 0.95 and x.mean() > 0.95  # the crop is the white middle square


def test_train_transform_random_but_shaped_and_picklable():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    t = ImageTransform(24, train=True)
    torch.manual_seed(0)
    a, b = t(img), t(img)
    assert a.shape == b.shape == (3, 24, 24)
    assert not torch.equal(a, b)
    t2 = pickle.loads(pickle.dumps(t))
    assert t2 == t and t2(img).shape == (3, 24, 24)
    assert ImageTransform(24) != t
    with pytest.raises(ValueError, match="size"):
        ImageTransform(0)


@pytest.mark.parametrize("mode", ["resize_crop", "targetpad"])
def test_pixels_then_a_batch_normalised_equal_the_whole_transform(mode):
    """Embedding decodes to uint8 per image and normalises per batch: the same floats, bit for bit."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in ((64, 48), (37, 90), (32, 32), (200, 120))]
    transform = ImageTransform(32, mode=mode)
    whole = torch.stack([transform(im) for im in images])
    pixels = torch.stack([transform.pixels(im) for im in images])
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, 3, 32, 32)
    assert torch.equal(transform.normalise(pixels), whole)
    again = pickle.loads(pickle.dumps(transform))  # what a DataLoader worker gets
    assert torch.equal(again.pixels(images[1].convert("L")), transform.pixels(images[1].convert("L").convert("RGB")))
