"""The relevance term: each composed query's mass on the catalogue images that answer it.

The pair loss asks for one exact target. A shopper who asks for "this, but red" of a
striped shirt wants red shirts first, striped or not, before a red striped t-shirt that
differs only in its garment type; with most exact targets absent from a catalogue, that
order decides what they see. :class:`Relevance` says which training images answer an
example's request (the target's garment type, and the values of the attributes on which
source and target differ); :class:`RelevanceBank` holds the training catalogue's target
embeddings (refreshed every few steps, without gradient) and gives the term
``losses.relevant_mass_loss`` of a batch of queries against all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fashion_retrieval.losses import relevant_mass_loss


class Relevance:
    """Garment type and attribute values of a split's items, as integer codes.

    Target ``j`` answers example ``i`` when it has the garment type (category) of ``i``'s
    target and, where items carry attributes, every value that ``i``'s change asks for.
    Items without attributes (FashionIQ, Fashion200k) give the type alone.
    """

    def __init__(self, items: Sequence[Any]) -> None:
        missing = [it.id for it in items if not it.category]
        if missing:
            raise ValueError(f"relevance_weight needs every training item's garment type (category); "
                             f"{len(missing)} have none, e.g. {missing[0]!r}")
        types: dict[str, int] = {}
        names = sorted({a for it in items for a in (it.attributes or {})})
        values: dict[str, int] = {}
        codes = []
        for it in items:
            attrs = it.attributes or {}
            codes.append([types.setdefault(it.category, len(types))]
                         + [values.setdefault(f"{a}={attrs[a]}", len(values)) if a in attrs else -1 for a in names])
        if len(types) < 2 and not names:
            raise ValueError("relevance_weight needs items of two garment types or more, or items with attributes: "
                             "otherwise every item answers every request")
        self.rows = {it.id: i for i, it in enumerate(items)}
        self.codes = torch.tensor(codes, dtype=torch.long)  # (N, 1 + A): type, then each attribute's value
        # has[c] (N,) bool: the items whose column holds code c (types first, then values);
        # the last row, all True, pads an example's list of asked codes.
        self.offsets = torch.tensor([0] + [len(types)] * len(names))
        total = len(types) + len(values)
        col_codes = self.codes + self.offsets  # (N, 1 + A) codes made distinct across columns
        self.has = torch.zeros(total + 1, len(items), dtype=torch.bool)
        for col in range(col_codes.shape[1]):
            ok = self.codes[:, col] >= 0
            self.has[col_codes[ok, col], torch.arange(len(items))[ok]] = True
        self.has[total] = True
        self.pad = total

    def mask(self, sources: Sequence[str | None], targets: Sequence[str], rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) bool: ``[i, j]`` when item ``j`` answers example ``i`` (source ``None``: the type alone);
        with ``rows`` (M,), over those items only: (B, M)."""
        tgt = self.codes[[self.rows[t] for t in targets]]  # (B, 1 + A)
        src = torch.stack([self.codes[self.rows[s]] if s is not None else c
                           for s, c in zip(sources, tgt, strict=True)])
        asked = (src != tgt) & (tgt >= 0)  # (B, 1 + A): what each change asks for
        asked[:, 0] = True  # the type always counts
        wanted = torch.where(asked, tgt + self.offsets, self.pad)  # (B, 1 + A) codes, padded
        has = self.has if rows is None else self.has[:, rows]  # (codes + 1, N or M)
        return has[wanted].all(dim=1)  # (B, 1 + A, N) -> (B, N)


class RelevanceBank:
    """The training catalogue's target embeddings, for :func:`losses.relevant_mass_loss`.

    ``features`` (N, Dimg) are the cached backbone features of the items of ``relevance``,
    in the same order. The embeddings are recomputed (eval mode, no gradient) at the first
    step and then every ``refresh`` steps; they are part of the checkpoint
    (``state_dict``), so a resumed run sees the very embeddings an uninterrupted one would.
    Each step ranks the batch's own targets plus ``candidates`` items drawn at random
    (seeded by ``seed`` and the step: the same draw after a resume); 0: every item.
    """

    def __init__(self, relevance: Relevance, features: torch.Tensor, refresh: int = 50,
                 candidates: int = 0, seed: int = 0) -> None:
        if features.shape[0] != relevance.codes.shape[0]:
            raise ValueError(f"features ({features.shape[0]} rows) and relevance ({relevance.codes.shape[0]} items) differ")
        self.relevance, self.features, self.refresh = relevance, features, refresh
        self.candidates, self.seed = candidates, seed
        self.embeddings: torch.Tensor | None = None  # (N, D)
        self.at = -1  # the step the embeddings were computed at

    @torch.no_grad()
    def _update(self, model: Any, step: int) -> None:
        was = model.training
        model.eval()
        try:
            self.embeddings = torch.cat([model.encode_target(image_features=f) for f in self.features.split(1024)])
        finally:
            model.train(was)
        self.at = step

    def loss(self, model: Any, query: torch.Tensor, sources: Sequence[str | None], targets: Sequence[str],
             step: int) -> torch.Tensor:
        """The relevance term of ``query`` (B, D) for the batch's examples, at micro-step ``step``."""
        if self.embeddings is None or step >= self.at + self.refresh or step < self.at:
            self._update(model, step)
        rows = self.rows(targets, step)
        relevant = self.relevance.mask(sources, targets, rows).to(query.device)  # (B, M)
        candidates = self.embeddings if rows is None else self.embeddings[rows.to(self.embeddings.device)]
        return relevant_mass_loss(query, candidates.to(query.device), relevant, model.logit_scale)

    def rows(self, targets: Sequence[str], step: int) -> torch.Tensor | None:
        """The items ranked at ``step``: the targets' rows, then the seeded draw (None: all)."""
        n = self.relevance.codes.shape[0]
        if not self.candidates or self.candidates >= n:
            return None
        drawn = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + step))
        own = torch.tensor(sorted({self.relevance.rows[t] for t in targets}), dtype=torch.long)
        keep = torch.ones(n, dtype=torch.bool)
        keep[own] = False
        return torch.cat([own, drawn[keep[drawn]][: self.candidates]])

    def state_dict(self) -> dict[str, Any]:
        """The embeddings and their step (for ``accelerator.register_for_checkpointing``)."""
        return {"embeddings": None if self.embeddings is None else self.embeddings.cpu(), "at": self.at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        emb = state["embeddings"]
        self.embeddings = None if emb is None else emb.to(self.features.device)
        self.at = int(state["at"])
