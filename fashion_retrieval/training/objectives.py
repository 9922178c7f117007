"""What one training step optimises, per task: a module that maps a dict batch to a loss.

The whole forward pass (embeddings and loss) runs inside :class:`TrainingModule.forward`,
so that Accelerate's DDP wrapper sees every parameter that takes part and all-reduces
its gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fashion_retrieval.losses import (
    batch_classification_loss,
    cmpm_loss,
    correlational_objective,
    soft_triplet_loss,
    symmetric_infonce,
)
from fashion_retrieval.registry import Registry

PairLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# (query (B, D), target (B, D), labels (B,), scale ()) -> loss. ``scale`` is the model's
# learnable similarity scale (1 / temperature).
PAIR_LOSSES: Registry[PairLoss] = Registry("loss")
PAIR_LOSSES.register("batch_classification")(lambda q, t, y, s: batch_classification_loss(q, t, s))
PAIR_LOSSES.register("soft_triplet")(lambda q, t, y, s: soft_triplet_loss(q, t))
PAIR_LOSSES.register("symmetric_infonce")(lambda q, t, y, s: symmetric_infonce(q, t, 1.0 / s))
PAIR_LOSSES.register("cmpm")(lambda q, t, y, s: cmpm_loss(s * t, s * q, y))

OBJECTIVES: Registry[Callable[..., torch.Tensor]] = Registry("task")


def _query(model: Any, batch: dict[str, Any], use_text: bool) -> torch.Tensor:
    """Query embeddings (B, D) of the batch's source image (pixels or features) and/or text."""
    return model.encode_query(
        images=batch.get("source"),
        texts=batch["text"] if use_text else None,
        image_features=batch.get("source_features"),
    )


def _target(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Target embeddings (B, D) of the batch's target image (pixels or features)."""
    return model.encode_target(images=batch.get("target"), image_features=batch.get("target_features"))


def _pair_loss(module: TrainingModule, q: torch.Tensor, t: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """The configured in-batch loss of (query, target) pairs."""
    labels = batch["label"].to(q.device)
    return PAIR_LOSSES.get(module.loss_name)(q, t, labels, module.model.scale)


@OBJECTIVES.register("composed")
def composed_objective(module: TrainingModule, batch: dict[str, Any]) -> torch.Tensor:
    """(source image + text) -> target image."""
    return _pair_loss(module, _query(module.model, batch, True), _target(module.model, batch), batch)


@OBJECTIVES.register("image_to_image")
def image_to_image_objective(module: TrainingModule, batch: dict[str, Any]) -> torch.Tensor:
    """One view of a product (image-only query) -> another view of it."""
    return _pair_loss(module, _query(module.model, batch, False), _target(module.model, batch), batch)


@OBJECTIVES.register("crossmodal")
def crossmodal_objective(module: TrainingModule, batch: dict[str, Any]) -> torch.Tensor:
    """Caption (text-only query) <-> image: a dual encoder, or a correlational network."""
    model = module.model
    txt = model.encode_query(texts=batch["text"])  # (B, D)
    img = _target(model, batch)  # (B, D)
    if module.loss_name != "correlational":
        return _pair_loss(module, txt, img, batch)
    feats = batch.get("target_features")
    if feats is None:
        feats = model.image_features(batch["target"])
    img_in = feats.float().to(img.device)  # (B, Dimg) what the image code must reconstruct
    with torch.no_grad():
        txt_in = model.text_encoder(list(batch["text"])).float()  # (B, Dtxt)
    dec_img, dec_txt = module.decoders["image"], module.decoders["text"]
    recons = [dec_img(img), dec_img(txt), dec_txt(txt), dec_txt(img)]
    targets = [img_in, img_in, txt_in, txt_in]
    return correlational_objective(img, txt, recons, targets)


class TrainingModule(nn.Module):
    """The model plus training-only heads; ``forward(batch) -> loss`` for the configured task."""

    def __init__(self, model: nn.Module, task: str, loss: str) -> None:
        super().__init__()
        self.model = model
        self.task, self.loss_name = task, loss
        self._objective = OBJECTIVES.get(task)
        if loss == "correlational":
            if task != "crossmodal":
                raise ValueError(f"loss 'correlational' is for task 'crossmodal', not {task!r}")
            dim = model.config.embed_dim
            # Correlational-network decoders: rebuild each view's input from either code.
            self.decoders = nn.ModuleDict({
                "image": nn.Linear(dim, model.feature_dim),
                "text": nn.Linear(dim, model.text_encoder.output_dim),
            })
        else:
            PAIR_LOSSES.get(loss)  # unknown names fail here, before training starts

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """The scalar loss of one batch."""
        return self._objective(self, batch)
