"""Image -> tensor preprocessing shared by training, evaluation and the demos."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
PREPROCESS_MODES: tuple[str, ...] = ("resize_crop", "targetpad")


class TargetPad:
    """Pad a PIL image with black borders until its long/short side ratio is ``target_ratio``.

    The "targetpad" preprocessing of CLIP4Cir (Baldrati et al.): an image whose ratio is
    below ``target_ratio`` is returned as it is; a longer one gets ``int((max(w, h) /
    target_ratio - side) / 2)`` pixels on both ends of its short side, so that the centre
    crop that follows keeps most of a long garment instead of cutting its ends off.
    """

    def __init__(self, target_ratio: float) -> None:
        if not target_ratio >= 1.0:
            raise ValueError(f"target_ratio must be >= 1 (long side / short side), got {target_ratio}")
        self.target_ratio = float(target_ratio)

    def padding(self, width: int, height: int) -> tuple[int, int]:
        """(horizontal, vertical) pixels added on each side of a ``width`` x ``height`` image."""
        if max(width, height) / min(width, height) < self.target_ratio:
            return 0, 0
        long_side = max(width, height) / self.target_ratio
        return max(int((long_side - width) / 2), 0), max(int((long_side - height) / 2), 0)

    def __call__(self, image: Image.Image) -> Image.Image:
        """The padded image (a new one; the input is left as it is)."""
        hp, vp = self.padding(*image.size)
        if hp == 0 and vp == 0:
            return image
        out = Image.new(image.mode, (image.width + 2 * hp, image.height + 2 * vp), 0)
        out.paste(image, (hp, vp))
        return out


class ImageTransform:
    """A picklable callable: PIL image -> normalised float tensor ``(3, size, size)``.

    ``mode="resize_crop"`` (default). Eval (``train=False``): resize the shorter side to
    ``size`` then centre-crop. Train: a random resized crop covering 80-100 % of the
    image, then a random horizontal flip.
    ``mode="targetpad"`` (CLIP4Cir): :class:`TargetPad` to ``target_ratio``, bicubic resize
    of the shorter side to ``size``, centre crop; the same for training, as published
    (no augmentation).
    Non-RGB images go through ``load_image`` first, so transparent or greyscale inputs are
    handled the same way everywhere. The torchvision pipeline is built on first use (and
    rebuilt after unpickling in a DataLoader worker).
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train: bool = False,
        mode: str = "resize_crop",
        target_ratio: float = 1.25,
    ) -> None:
        if int(size) <= 0:
            raise ValueError(f"ImageTransform size must be positive, got {size}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {mean!r} and {std!r}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {std!r}")
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = bool(train)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {', '.join(PREPROCESS_MODES)}")
        self.mode = mode
        self.target_ratio = TargetPad(target_ratio).target_ratio  # validates it
        self._pipeline: Any = None

    def config(self) -> dict[str, Any]:
        """The settings as a plain dict (what feature caches key on)."""
        out: dict[str, Any] = {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "train": self.train,
        }
        if self.mode != "resize_crop":  # the default adds no keys: existing caches stay valid
            out.update(mode=self.mode, target_ratio=self.target_ratio)
        return out

    def _geometry(self) -> list[Any]:
        """PIL image -> uint8 image tensor ``(3, size, size)``: the resize and crop steps."""
        from torchvision.transforms import v2  # lazy: torchvision is heavy to import

        if self.mode == "targetpad":
            # On the PIL image, as CLIP4Cir did: pad, PIL bicubic resize, crop.
            return [
                TargetPad(self.target_ratio),
                v2.Resize(self.size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                v2.CenterCrop(self.size),
                v2.ToImage(),
            ]
        if self.train:
            return [v2.ToImage(), v2.RandomResizedCrop(self.size, scale=(0.8, 1.0), antialias=True),
                    v2.RandomHorizontalFlip()]
        return [v2.ToImage(), v2.Resize(self.size, antialias=True), v2.CenterCrop(self.size)]

    def _build(self) -> Any:
        from torchvision.transforms import v2

        return v2.Compose([*self._geometry(), *self._to_normalised_tensor()])

    def _to_normalised_tensor(self) -> list[Any]:
        """uint8 image tensor -> float, normalised, plain tensor."""
        import torch
        from torchvision.transforms import v2

        return [
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(self.mean), std=list(self.std)),
            v2.ToPureTensor(),  # a plain torch.Tensor, not a tv_tensors.Image
        ]

    def __call__(self, image: Image.Image) -> Any:
        """Transform one image; returns a float tensor ``(3, size, size)``."""
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            from fashion_retrieval.data.images import load_image

            image = load_image(image)
        if self._pipeline is None:
            self._pipeline = self._build()
        return self._pipeline(image)  # (3, size, size)

    def pixels(self, image: Image.Image) -> Any:
        """The first half of :meth:`__call__`: the uint8 tensor ``(3, size, size)`` before scaling
        and normalisation (4x smaller to pass between processes); :meth:`normalise` a batch of
        them gives what ``__call__`` gives each, bit for bit."""
        from torchvision.transforms import v2

        if not isinstance(image, Image.Image) or image.mode != "RGB":
            from fashion_retrieval.data.images import load_image

            image = load_image(image)
        if self.__dict__.get("_geometry_pipeline") is None:
            self._geometry_pipeline = v2.Compose([*self._geometry(), v2.ToPureTensor()])
        return self._geometry_pipeline(image)

    def normalise(self, pixels: Any) -> Any:
        """uint8 images ``(..., 3, size, size)`` -> float32, scaled to [0, 1] and normalised: the
        second half of :meth:`__call__`, on a whole batch at once (one operation per step,
        not one per image)."""
        import torch
        from torchvision.transforms.v2 import functional as tvf

        return tvf.normalize(tvf.to_dtype(pixels, torch.float32, scale=True), list(self.mean), list(self.std))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pipeline"] = state["_geometry_pipeline"] = None  # rebuilt lazily in the worker
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageTransform) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((self.size, self.mean, self.std, self.train, self.mode, self.target_ratio))

    def __repr__(self) -> str:
        extra = f", mode={self.mode!r}, target_ratio={self.target_ratio}" if self.mode != "resize_crop" else ""
        return f"ImageTransform(size={self.size}, mean={self.mean}, std={self.std}, train={self.train}{extra})"
