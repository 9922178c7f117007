"""The training tasks, each one ``TASKS`` entry: its examples, its objective, its evaluation.

A ``Task`` says how training examples are built from a data set, what one step optimises,
which extra examples the items' attributes give, and which evaluation protocol scores it.
``TrainConfig.task`` takes exactly the registered names. ``TaskModule`` is the model
plus the heads a task and loss need; its ``forward(batch)`` is the task's objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.losses import LOSSES, Loss
from fashion_retrieval.registry import Registry
from fashion_retrieval.training import objectives
from fashion_retrieval.training.data import (
    Example,
    attribute_pair_examples,
    composed_examples,
    crossmodal_examples,
    description_examples,
    image_to_image_examples,
)


@dataclass(frozen=True)
class Task:
    """One training task.

    ``build_examples(dataset)`` gives its training examples; ``objective(module, batch)``
    the loss of one dict batch; ``generated(dataset, config)`` the extra examples made from
    the items' attributes (``generated_pairs``/``generated_descriptions``); ``protocol``
    the evaluation protocol (None: the data set's own).
    """

    name: str
    build_examples: Callable[[RetrievalDataset], list[Example]]
    objective: Callable[[TaskModule, dict[str, Any]], torch.Tensor]
    protocol: str | None
    generated: Callable[[RetrievalDataset, Any], list[Example]] | None = None
    description: str = ""


TASKS: Registry[Task] = Registry("task")
TASKS.add("composed", Task(
    "composed", composed_examples, objectives.composed_objective, protocol=None,
    generated=attribute_pair_examples, description="source image + modification text -> target image",
))
TASKS.add("crossmodal", Task(
    "crossmodal", crossmodal_examples, objectives.crossmodal_objective, protocol="crossmodal",
    generated=description_examples, description="caption <-> image",
))
TASKS.add("image_to_image", Task(
    "image_to_image", image_to_image_examples, objectives.image_to_image_objective, protocol="image_to_image",
    description="one view of a product -> its other views",
))


def build_examples(dataset: RetrievalDataset, task: str) -> list[Example]:
    """The training examples of ``dataset`` for ``task``; an error if there are none."""
    examples = TASKS.get(task).build_examples(dataset)
    if not examples:
        raise ValueError(
            f"{dataset.name} split {dataset.split!r} (root {dataset.root}) has no training examples "
            f"for task {task!r}: {len(dataset.items)} items, {len(dataset.triplets)} triplets"
        )
    return examples


def generated_examples(dataset: RetrievalDataset, config: Any) -> list[Example]:
    """The extra examples ``config.task`` makes from the items' attributes (none when the task
    has no generator or the config asks for none)."""
    generated = TASKS.get(config.task).generated
    return generated(dataset, config) if generated is not None else []


class TaskModule(nn.Module):
    """The model plus training-only heads; ``forward(batch) -> loss`` for the configured task."""

    def __init__(self, model: nn.Module, task: str, loss: str, relevance_weight: float = 0.0) -> None:
        super().__init__()
        self.model = model
        # The relevance term (training/relevance.py): its weight, and the bank setup_run attaches.
        self.relevance_weight, self.relevance = relevance_weight, None
        self.task: Task = TASKS.get(task)
        self.loss: Loss = LOSSES.get(loss)  # unknown names fail here, before training starts
        self.loss.check_task(task)
        if self.loss.pair is None:
            dim = model.config.embed_dim
            # Correlational-network decoders: rebuild each view's input from either code.
            self.decoders = nn.ModuleDict({
                "image": nn.Linear(dim, model.feature_dim),
                "text": nn.Linear(dim, model.text_encoder.output_dim),
            })

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """The scalar loss of one batch."""
        return self.task.objective(self, batch)
