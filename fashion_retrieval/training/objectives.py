"""What one training step optimises, per task: functions of an ``ObjectiveInputs`` and a dict batch.

The whole forward pass (embeddings and loss) runs inside ``TaskModule.forward``
(``training/tasks.py``), so that Accelerate's DDP wrapper sees every parameter that takes
part and all-reduces its gradients. Each task's objective is named by its ``Task`` entry.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from fashion_retrieval.losses import Loss, correlational_objective


class ObjectiveInputs(Protocol):
    """What an objective reads of ``tasks.TaskModule``: the model, the task and the loss
    entries, the correlational decoders when the loss has them, and the relevance term's weight and bank."""

    model: Any
    task: Any  # tasks.Task
    loss: Loss
    decoders: Any  # nn.ModuleDict {"image", "text"}
    relevance_weight: float
    relevance: Any  # relevance.RelevanceBank, or None


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


def _pair_loss(module: ObjectiveInputs, q: torch.Tensor, t: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """The configured in-batch loss of (query, target) pairs."""
    if module.loss.pair is None:
        raise ValueError(f"loss {module.loss.name!r} is not a pair loss; task {module.task.name!r} needs one")
    labels = batch["label"].to(q.device)
    return module.loss.pair(q, t, labels, module.model.logit_scale)


def composed_objective(module: ObjectiveInputs, batch: dict[str, Any]) -> torch.Tensor:
    """(source image + text) -> target image, plus the relevance term when it is on."""
    q = _query(module.model, batch, True)
    loss = _pair_loss(module, q, _target(module.model, batch), batch)
    if module.relevance_weight > 0:
        if module.relevance is None:
            raise ValueError("relevance_weight needs the training catalogue's RelevanceBank (training/relevance.py)")
        term = module.relevance.loss(module.model, q, batch["source_ids"], batch["target_ids"], batch["step"])
        loss = loss + module.relevance_weight * term
    return loss


def image_to_image_objective(module: ObjectiveInputs, batch: dict[str, Any]) -> torch.Tensor:
    """One view of a product (image-only query) -> another view of it."""
    return _pair_loss(module, _query(module.model, batch, False), _target(module.model, batch), batch)


def crossmodal_objective(module: ObjectiveInputs, batch: dict[str, Any]) -> torch.Tensor:
    """Caption (text-only query) <-> image: a dual encoder, or a correlational network."""
    model = module.model
    txt = model.encode_query(texts=batch["text"])  # (B, D)
    img = _target(model, batch)  # (B, D)
    if module.loss.pair is not None:
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
