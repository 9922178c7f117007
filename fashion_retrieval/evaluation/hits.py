"""What counts as a correct hit, per protocol: the one rule that evaluation, the demo and the
dashboard share.

- ``fashioniq``: only the target image itself (the release's protocol ranks the target id).
- ``fashion200k``, ``synthetic``, ``one_gallery``: any image whose caption equals the target
  caption exactly (every view of the target product counts), the query image left out.
- no protocol (a plain photo folder): only the target image itself.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class HitRule:
    """How a protocol judges a retrieved image."""

    by_caption: bool  # an image with the target's caption is a hit, not only the target id
    exclude_source: bool  # the query image is left out of its own ranking


BY_ID = HitRule(by_caption=False, exclude_source=False)
BY_CAPTION = HitRule(by_caption=True, exclude_source=True)
HIT_RULES: dict[str, HitRule] = {
    "fashioniq": BY_ID,
    "fashion200k": BY_CAPTION,
    "synthetic": BY_CAPTION,
    "one_gallery": BY_CAPTION,
}


def hit_rule(protocol: str | None) -> HitRule:
    """The rule of ``protocol`` (by target id for a protocol without a rule of its own)."""
    return HIT_RULES.get(protocol or "", BY_ID)


def is_correct(
    protocol: str | None,
    hit_id: str,
    hit_caption: str,
    target_ids: Collection[str],
    target_caption: str = "",
) -> bool:
    """Whether a retrieved image answers a query whose known answer is ``target_ids`` (and,
    under a caption protocol, ``target_caption``)."""
    if hit_id in target_ids:
        return True
    return hit_rule(protocol).by_caption and bool(target_caption) and hit_caption == target_caption
