"""Image -> tensor preprocessing shared by training, evaluation and the demos."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class ImageTransform:
    """A picklable callable: PIL image -> normalised float tensor ``(3, size, size)``.

    Eval (``train=False``): resize the shorter side to ``size`` then centre-crop.
    Train: a random resized crop covering 80-100 % of the image, then a random
    horizontal flip. Non-RGB images go through ``load_image`` first, so transparent or
    greyscale inputs are handled the same way everywhere. The torchvision pipeline is
    built on first use (and rebuilt after unpickling in a DataLoader worker).
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train: bool = False,
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
        self._pipeline: Any = None

    def config(self) -> dict[str, Any]:
        """The settings as a plain dict (what feature caches key on)."""
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "train": self.train,
        }

    def _build(self) -> Any:
        import torch
        from torchvision.transforms import v2  # lazy: torchvision is heavy to import

        if self.train:
            geometry = [
                v2.RandomResizedCrop(self.size, scale=(0.8, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        else:
            geometry = [v2.Resize(self.size, antialias=True), v2.CenterCrop(self.size)]
        return v2.Compose(
            [
                v2.ToImage(),
                *geometry,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean=list(self.mean), std=list(self.std)),
                v2.ToPureTensor(),  # a plain torch.Tensor, not a tv_tensors.Image
            ]
        )

    def __call__(self, image: Image.Image) -> Any:
        """Transform one image; returns a float tensor ``(3, size, size)``."""
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            from fashion_retrieval.data.images import load_image

            image = load_image(image)
        if self._pipeline is None:
            self._pipeline = self._build()
        return self._pipeline(image)  # (3, size, size)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pipeline"] = None  # rebuilt lazily in the worker
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageTransform) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((self.size, self.mean, self.std, self.train))

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size}, mean={self.mean}, std={self.std}, train={self.train})"
