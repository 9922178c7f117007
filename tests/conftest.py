"""Shared pytest fixtures (keep generic: every test module may use them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FASHIONIQ_ANNOTATIONS = Path(
    os.environ.get("FASHIONIQ_ANNOTATIONS", REPO.parent / "shared" / "data" / "fashioniq")
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # lets tests `import helpers`


@pytest.fixture
def fashioniq_annotations() -> Path:
    """The real FashionIQ annotation folder (read-only); skips the test where it is absent."""
    if not (FASHIONIQ_ANNOTATIONS / "captions").is_dir():
        pytest.skip(f"real FashionIQ annotations not found at {FASHIONIQ_ANNOTATIONS}")
    return FASHIONIQ_ANNOTATIONS
