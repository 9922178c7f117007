"""How a model answers a shopper who keeps talking: one query from a session's requests.

A refinement session is a sequence of turns: each turn's picture is the result the shopper
picked, each turn's words what is still wrong. Every model answers a turn from ``turns``,
the ``(T, D)`` normalised query embeddings of the *current* picture composed with each
turn's words so far (oldest first, the newest last). A policy makes one query of them:

- ``last_turn``: the newest row only (what a one-turn model does);
- ``history``: the newest row plus the earlier ones at ``EARLIER_WEIGHT`` each (their mean),
  so an earlier request ("red") still pulls when a later one ("long sleeves") is followed.

No model is retrained for either; both work for every compositor (for ``image_only`` every
row is the same, so the two policies agree).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fashion_retrieval.registry import Registry

HISTORY_POLICIES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("history policy")
# The weight of the earlier requests' mean beside the newest one (``history``). Chosen on the
# training phrasing of the synthetic sessions (never on the held-out sentences the
# evaluation asks in): see evaluation/sessions.py.
EARLIER_WEIGHT = 0.5


def _check(turns: torch.Tensor) -> None:
    if turns.ndim != 2 or turns.shape[0] == 0:
        raise ValueError(f"turns must be a non-empty (T, D) tensor, got shape {tuple(turns.shape)}")


@HISTORY_POLICIES.register("last_turn")
def last_turn(turns: torch.Tensor) -> torch.Tensor:
    """The newest turn's query ``(D,)``."""
    _check(turns)
    return turns[-1]


@HISTORY_POLICIES.register("history")
def history(turns: torch.Tensor, earlier_weight: float = EARLIER_WEIGHT) -> torch.Tensor:
    """``normalize(q_T + w * mean(q_1..q_{T-1}))`` ``(D,)``: the newest request first, the earlier ones kept."""
    _check(turns)
    if turns.shape[0] == 1:
        return turns[0]
    mixed = turns[-1] + earlier_weight * turns[:-1].mean(dim=0)  # (D,)
    return F.normalize(mixed, dim=0)


def session_query(policy: str, turns: torch.Tensor) -> torch.Tensor:
    """The ``(D,)`` query of ``turns`` ``(T, D)`` under the policy named ``policy``."""
    return HISTORY_POLICIES.get(policy)(turns)
