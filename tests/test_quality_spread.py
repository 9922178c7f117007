"""scripts/quality_spread.py: the figures of several quality runs compared, seed by seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, name: str, r1: float, both: float) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"models": {"tirg": {"one_gallery": {"R@1": r1, "R@10": 90.0},
                                                   "control": {"both": both, "exact": 10.0}},
                                          "text_only": {"one_gallery": {"R@1": 10.0}}}}))
    return path


def test_within_and_outside_the_seed_range(tmp_path):
    before = [_run(tmp_path, f"b{i}", r1, 80.0) for i, r1 in enumerate((70.0, 72.0, 74.0))]
    after = [_run(tmp_path, f"a{i}", r1, 60.0) for i, r1 in enumerate((71.0, 73.0))]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "quality_spread.py"), "--before", *map(str, before),
                          "--after", *map(str, after), "--json", str(tmp_path / "t.json")],
                         capture_output=True, text=True, check=True).stdout
    rows = {(r["model"], r["figure"]): r for r in json.loads((tmp_path / "t.json").read_text())["rows"]}
    assert rows["tirg", "one-gallery R@1"]["within"] is True and rows["tirg", "one-gallery R@1"]["after_mean"] == 72.0
    assert rows["tirg", "control both"]["within"] is False  # 80 -> 60: outside a range of 0
    assert rows["text_only", "one-gallery R@1"]["before_range"] == 0.0
    assert "4/5 after means within" in out  # R@1, R@10 and exact of tirg, text_only R@1


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "quality_spread.py"), "--before", str(bad),
                           "--after", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2 and "cannot read a quality JSON" in done.stderr
