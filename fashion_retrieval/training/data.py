"""Training examples per task, a resumable deterministic batch order, and dict batches.

The batch order depends only on (seed, micro-step, rank, world size): each epoch is a
permutation drawn from ``seed + epoch`` and micro-step ``k`` of rank ``r`` takes the
``r``-th slice of the ``k``-th global batch. Resuming at step ``k`` is therefore exact
(no batches to replay), and the ranks always see disjoint examples.

Per-sample draws (``SampleDraw``): an example can be redrawn every time it is sampled, from
an RNG seeded by (seed, micro-step, example index) alone, so a resumed or multi-process run
draws exactly what an uninterrupted one would. Fashion200k draws a fresh sibling target and
"replace X with Y" text, as TIRG does (``Fashion200kSiblings``); FashionIQ can randomise its
two captions as CLIP4Cir does (``train_caption_mode: random``, ``RandomCaptions``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from fashion_retrieval.data import DATASETS
from fashion_retrieval.data.fashioniq import (
    TRAIN_CAPTION_LOADER_MODES,
    clip4cir_caption_forms,
    query_texts,
)
from fashion_retrieval.data.records import RetrievalDataset


@dataclass(frozen=True)
class Example:
    """One training pair: a query (``source`` image and/or ``text``) and its ``target`` image.

    ``label`` groups examples that share an identity (same caption, same product), for
    losses such as CMPM that use identity labels.
    """

    source: str | None
    text: str | None
    target: str
    label: int
    captions: tuple[str, ...] = ()  # the annotation's own captions (FashionIQ), for per-sample texts


def composed_examples(dataset: RetrievalDataset) -> list[Example]:
    """(source, text, target) triplets with a known target; label = the target's row."""
    rows = {it.id: i for i, it in enumerate(dataset.items)}
    return [
        Example(t.source, t.text, t.target, rows[t.target], tuple(t.captions))
        for t in dataset.triplets
        if t.target is not None and t.target in rows and t.source in rows
    ]


def crossmodal_examples(dataset: RetrievalDataset) -> list[Example]:
    """(caption, image) pairs of captioned items; items with equal captions share a label."""
    labels: dict[str, int] = {}
    out = []
    for it in dataset.items:
        if it.caption:
            out.append(Example(None, it.caption, it.id, labels.setdefault(it.caption, len(labels))))
    return out


def product_key(item: Any) -> str:
    """What makes two items views of one product: the same rule as the image-to-image protocol."""
    from fashion_retrieval.evaluation.image_to_image import product_label

    return product_label(item)


def image_to_image_examples(dataset: RetrievalDataset) -> list[Example]:
    """(view, other view) pairs of one product; a product with one image pairs with itself."""
    groups: dict[str, list[str]] = {}
    for it in dataset.items:
        groups.setdefault(product_key(it), []).append(it.id)
    out = []
    for label, ids in enumerate(groups.values()):
        for i, item_id in enumerate(ids):
            out.append(Example(item_id, None, ids[(i + 1) % len(ids)], label))
    return out


# Examples made from the items' attributes by the data set's own tools (its entry's
# ``helper("pairs")``); TrainConfig refuses them for a data set without attributes.
def attribute_pair_examples(dataset: RetrievalDataset, config: Any) -> list[Example]:
    """``generated_pairs`` composed pairs of products that differ in one or two attributes,
    with a training-phrasing text; label = the target's row."""
    if not config.generated_pairs:
        return []
    rows = {it.id: i for i, it in enumerate(dataset.items)}
    pairs = DATASETS.get(config.dataset).helper("pairs").attribute_change_pairs(dataset.items, config.generated_pairs, seed=config.seed)
    return [Example(s, text, t, rows[t]) for s, t, text in pairs]


def description_examples(dataset: RetrievalDataset, config: Any) -> list[Example]:
    """``generated_descriptions`` partial descriptions of each item ("red dress") paired
    with its image; equal descriptions share a label."""
    if not config.generated_descriptions:
        return []
    described = DATASETS.get(config.dataset).helper("pairs").partial_descriptions(dataset.items, config.generated_descriptions, seed=config.seed)
    labels: dict[str, int] = {}
    return [Example(None, text, i, labels.setdefault(text, len(labels))) for i, text in described]


# ----------------------------------------------------------------- per-sample draws
TRAIN_CAPTION_MODES = tuple(TRAIN_CAPTION_LOADER_MODES)  # ("join", "random")


def join_captions(captions: tuple[str, ...]) -> str:
    """The ``join`` training text: "c1 and c2", the loader's ``join`` query text, which
    evaluation uses too (``fashioniq.query_texts``)."""
    return query_texts(captions, "join")[0]


def random_caption_forms(captions: tuple[str, ...]) -> list[str]:
    """Every text ``random_caption`` can draw from ``captions``, in its order: "C1 and c2",
    "C2 and c1", "C1", "C2" (one caption: just "C1"); what a frozen text cache needs.

    The first form is the loader's ``clip4cir`` query text, which a ``random`` run is
    evaluated on (``fashioniq.loader_caption_mode``), as CLIP4Cir validates.
    """
    return clip4cir_caption_forms(captions)


def random_caption(captions: tuple[str, ...], rng: random.Random) -> str:
    """CLIP4Cir's randomised FashionIQ training text (``generate_randomized_fiq_caption``).

    With probability 1/4 each: "C1 and c2", "C2 and c1", "C1", "C2", every caption stripped
    of ".?, " at both ends and the first one passed through ``str.capitalize`` (first letter
    upper case, the rest lower case, as CLIP4Cir does). One caption is used alone.
    """
    forms = random_caption_forms(captions)
    return forms[rng.randrange(len(forms))]


class RandomCaptions:
    """A ``SampleDraw`` rule: each sample of a FashionIQ example gets ``random_caption``."""

    def __call__(self, example: Example, rng: random.Random) -> Example:
        """The example with a freshly drawn text (unchanged when it has no captions)."""
        if not example.captions:
            return example
        return replace(example, text=random_caption(example.captions, rng))


class Fashion200kSiblings:
    """A ``SampleDraw`` rule: each sample of a Fashion200k source gets a fresh sibling target.

    As TIRG's ``caption_index_sample_``: a random parent caption of the source, a random other
    caption under it, a random image with that caption, and the pair's "replace X with Y".
    Examples whose source has no sibling (attribute pairs, say) are returned unchanged.
    """

    def __init__(self, dataset: RetrievalDataset) -> None:
        from fashion_retrieval.data.fashion200k import SiblingIndex

        self.index = SiblingIndex(dataset.items)
        self.rows = {it.id: i for i, it in enumerate(dataset.items)}

    def __call__(self, example: Example, rng: random.Random) -> Example:
        """The example with a new target, text and label (the target's row)."""
        drawn = self.index.draw(example.source, rng) if example.source is not None else None
        if drawn is None:
            return example
        target, text, target_caption = drawn
        captions = (self.index.caption_of[example.source], target_caption)
        return Example(example.source, text, target, self.rows[target], captions)


@dataclass
class SampleDraw:
    """Redraws an example each time it is sampled, deterministically.

    ``rule(example, rng)`` gets an RNG seeded by (``seed``, micro-step, example index) only:
    the draw does not depend on the process, the worker or what was drawn before.
    """

    rule: Callable[[Example, random.Random], Example]
    seed: int

    def __call__(self, example: Example, step: int, index: int) -> Example:
        """The example as drawn for micro-step ``step`` at example index ``index``."""
        return self.rule(example, random.Random(f"{self.seed}/{step}/{index}"))


def build_sample_draw(dataset: RetrievalDataset, config: Any) -> SampleDraw | None:
    """The per-sample draw the config asks for on ``dataset`` (None: examples stay fixed).

    A data set whose entry draws ``"siblings"`` (Fashion200k), task ``composed``,
    ``resample_pairs``: a fresh sibling per sample. ``train_caption_mode: random``
    (annotator captions: FashionIQ layout, task ``composed``): CLIP4Cir's randomised
    captions. The streaming path applies the same draw per streamed row
    (``training/stream.py``); a draw it cannot do raises a ValueError here, before training.
    """
    mode = getattr(config, "train_caption_mode", "join")
    if mode not in TRAIN_CAPTION_MODES:
        raise ValueError(f"train_caption_mode={mode!r} is not valid; choose one of {', '.join(TRAIN_CAPTION_MODES)}")
    rule: Callable[[Example, random.Random], Example] | None = None
    # A published copy carries the original data set's name, hence its entry's draw.
    entry = DATASETS.get(dataset.name) if dataset.name in DATASETS else None
    if config.task == "composed" and entry is not None and entry.sample_draw == "siblings":
        if mode != "join":
            raise ValueError("train_caption_mode 'random' needs two captions per triplet (FashionIQ or synthetic), "
                             f"not {dataset.name}'s generated 'replace X with Y' texts")
        if getattr(config, "resample_pairs", True):
            rule = Fashion200kSiblings(dataset)
    elif mode == "random":
        if config.task != "composed":
            raise ValueError(f"train_caption_mode 'random' applies to task 'composed', not {config.task!r}")
        rule = RandomCaptions()
    if rule is None:
        return None
    if getattr(config, "streaming", False):
        check_streamable_draw(rule, dataset)
    return SampleDraw(rule, config.seed)


def check_streamable_draw(rule: Callable[[Example, random.Random], Example], dataset: RetrievalDataset) -> None:
    """Raise a ValueError when the streaming path cannot apply ``rule`` to ``dataset``.

    A streamed row brings its own two images (parquet bytes or file paths), and the draw
    runs on the example the row stands for (``training/stream.py``). Random captions change
    only the text: always possible. A fresh Fashion200k sibling is any image whose caption
    is one word apart (the index is built from the items' captions, which a stream-loaded
    split has), so its pixels must be readable at random: every gallery item needs a local
    file. A published split loaded for streaming has none unless its images were cached.
    """
    if not isinstance(rule, Fashion200kSiblings):
        return
    missing = sum(1 for it in dataset.items if not it.path)
    if missing:
        raise ValueError(
            f"streaming with resample_pairs (a fresh sibling target per sample, as TIRG) reads any gallery image "
            f"at random, but {missing} of the {len(dataset.items)} {dataset.split} items of {dataset.name} have "
            "no local file (their images are only inside the stream): set dataset_options {images: true} "
            "(the published gallery is cached locally once), or streaming: false, or resample_pairs: false "
            "(the one fixed pair per source)"
        )


class StepBatchSampler:
    """Yields ``(micro_step, indices)`` from ``start_step`` on, forever, deterministically."""

    def __init__(
        self, num_examples: int, batch_size: int, seed: int, rank: int = 0,
        world_size: int = 1, start_step: int = 0,
    ) -> None:
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.batches_per_epoch = num_examples // (batch_size * world_size)
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{num_examples} training examples are fewer than one global batch "
                f"(batch_size {batch_size} x {world_size} processes); lower batch_size"
            )
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> list[int]:
        """The example indices of this rank's micro-batch number ``step``."""
        epoch, j = divmod(step, self.batches_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.num_examples, generator=g), epoch
        start = (j * self.world_size + self.rank) * self.batch_size
        return self._perm[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        step = self.start_step
        while True:
            yield step, self.indices(step)
            step += 1


def target_values(examples: list[Example], items: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Each example's target's (attribute, value) pairs, its category as ("type", category) first."""
    out = []
    for e in examples:
        item = items.get(e.target)
        keys = [("type", item.category)] if item is not None and item.category else []
        keys += sorted((item.attributes or {}).items()) if item is not None else []
        out.append(keys)
    return out


class SharedValueBatches(StepBatchSampler):
    """Shuffled batches, except a fraction ``share`` whose targets all share one value.

    In a shuffled batch the target nearly always differs from the other targets in colour
    or garment type, so a model can rank it first from one attribute and neglect the rest
    (it then returns a red shirt for "this t-shirt in red"). A shared-value batch takes
    every example from one (attribute, value) group: all targets red, or all striped, or
    all dresses; the picked group is weighted by its size. The draw is a function of
    (seed, global micro-step) alone, so a resumed or multi-process run sees exactly the
    same batches; each rank takes its slice of the global batch.
    """

    def __init__(self, values: list[list[tuple[str, str]]], batch_size: int, seed: int, share: float,
                 rank: int = 0, world_size: int = 1, start_step: int = 0) -> None:
        super().__init__(len(values), batch_size, seed, rank, world_size, start_step)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, keys in enumerate(values):
            for key in keys:
                groups.setdefault(key, []).append(i)
        need = batch_size * world_size
        self.groups = [torch.tensor(v) for _, v in sorted(groups.items()) if len(v) >= need]
        if share > 0 and not self.groups:
            raise ValueError(f"shared_value_batches: no target value is shared by a global batch of "
                             f"{need} examples (targets need attributes or a category)")
        sizes = torch.tensor([float(len(g)) for g in self.groups])
        self.weights = sizes / sizes.sum() if self.groups else sizes
        self.share = share

    def indices(self, step: int) -> list[int]:
        """A shared-value batch with probability ``share`` (decided by (seed, step)), else a shuffled one."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7 * step + 1)
        if not self.groups or torch.rand(1, generator=g).item() >= self.share:
            return super().indices(step)
        group = self.groups[int(torch.multinomial(self.weights, 1, generator=g))]
        pick = group[torch.randperm(len(group), generator=g)[: self.batch_size * self.world_size]]
        start = self.rank * self.batch_size
        return pick[start : start + self.batch_size].tolist()


def draw_examples(
    examples: list[Example], draw: SampleDraw | None, step: int, indices: list[int]
) -> list[Example]:
    """The examples of one micro-batch, redrawn per sample when there is a ``draw``."""
    if draw is None:
        return [examples[i] for i in indices]
    return [draw(examples[i], step, i) for i in indices]


class FeatureBatches:
    """Turns example indices into a dict batch of cached backbone features (no decoding)."""

    def __init__(
        self, examples: list[Example], item_rows: dict[str, int], features: torch.Tensor,
        draw: SampleDraw | None = None,
    ) -> None:
        self.examples, self.rows, self.features = examples, item_rows, features  # features (N, Dimg)
        self.draw = draw

    def __call__(self, step: int, indices: list[int]) -> dict[str, Any]:
        """The batch for ``indices``: ``source_features``/``target_features`` (B, Dimg), ``text``, ``label``."""
        ex = draw_examples(self.examples, self.draw, step, indices)
        batch = _common(ex, step, indices)
        if ex[0].source is not None:
            batch["source_features"] = self.features[[self.rows[e.source] for e in ex]]  # (B, Dimg)
        batch["target_features"] = self.features[[self.rows[e.target] for e in ex]]  # (B, Dimg)
        return batch


class ImageBatches(torch.utils.data.Dataset):
    """Map-style dataset whose keys are ``(micro_step, indices)``: decodes a whole batch.

    Augmentations run under an RNG seeded by (seed, step, first index) so that a resumed run
    sees exactly the pixels an uninterrupted one would, whichever worker decodes the batch.
    """

    def __init__(
        self, examples: list[Example], item_paths: dict[str, str], transform: Callable, seed: int,
        draw: SampleDraw | None = None,
    ) -> None:
        self.examples, self.paths, self.transform, self.seed = examples, item_paths, transform, seed
        self.draw = draw

    def __len__(self) -> int:
        return len(self.examples)

    def _pixels(self, ids: list[str]) -> torch.Tensor:
        from fashion_retrieval.data.images import load_image

        return torch.stack([self.transform(load_image(self.paths[i])) for i in ids])  # (B, 3, H, W)

    def __getitem__(self, key: tuple[int, list[int]]) -> dict[str, Any]:
        step, indices = key
        ex = draw_examples(self.examples, self.draw, step, indices)
        batch = _common(ex, step, indices)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + step * 7919 + indices[0])
            if ex[0].source is not None:
                batch["source"] = self._pixels([e.source for e in ex])
            batch["target"] = self._pixels([e.target for e in ex])
        return batch


def _common(ex: list[Example], step: int, indices: list[int]) -> dict[str, Any]:
    """The batch fields shared by both paths: texts, labels, ids, example indices, the step."""
    return {
        "index": list(indices),
        "text": None if ex[0].text is None else [e.text for e in ex],
        "label": torch.tensor([e.label for e in ex], dtype=torch.long),
        "source_ids": [e.source for e in ex],
        "target_ids": [e.target for e in ex],
        "step": step,
    }
