"""Is a change within the seed spread? The shopper figures of several quality runs, side by side.

    python scripts/quality_spread.py --before B0.json B1.json B2.json --after A0.json A1.json A2.json

Each file is the JSON of ``python -m fashion_retrieval.serving.quality`` (for a seed spread:
``--default-spec '{"train_seed": K}'``, the same catalogue, another training seed). For each
model and headline figure it prints the runs of each group, their means and whether the
after mean lies within the range of the before runs (a change that moves a mean less than
the seeds move it cannot be told from a seed). ``--json OUT`` writes the table too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (label, path in a model's entry): R@1 first, as a shopper sees it.
FIGURES = [
    ("one-gallery R@1", ("one_gallery", "R@1")),
    ("one-gallery R@10", ("one_gallery", "R@10")),
    ("control both", ("control", "both")),
    ("control exact", ("control", "exact")),
    ("held-out phrasing R@1", ("phrasing", "heldout", "R@1")),
    ("plain words R@1", ("phrasing", "plain", "R@1")),
]


def figure(run: dict, model: str, path: tuple[str, ...]) -> float | None:
    """One figure of one model in a quality JSON, or None where that model has none."""
    value = run.get("models", {}).get(model)
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def spread(before: list[dict], after: list[dict]) -> list[dict]:
    """Rows (model, figure, before runs, after runs, means, ranges, within)."""
    models = [m for m in before[0].get("models", {}) if all(m in r.get("models", {}) for r in before + after)]
    rows = []
    for model in models:
        for label, path in FIGURES:
            b = [figure(r, model, path) for r in before]
            a = [figure(r, model, path) for r in after]
            if None in b or None in a:
                continue
            mean_b, mean_a = sum(b) / len(b), sum(a) / len(a)
            rows.append({"model": model, "figure": label, "before": b, "after": a,
                         "before_mean": round(mean_b, 2), "after_mean": round(mean_a, 2),
                         "before_range": round(max(b) - min(b), 2), "after_range": round(max(a) - min(a), 2),
                         "within": min(b) <= mean_a <= max(b)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", nargs="+", type=Path, required=True)
    parser.add_argument("--after", nargs="+", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        before = [json.loads(p.read_text()) for p in args.before]
        after = [json.loads(p.read_text()) for p in args.after]
    except (OSError, ValueError) as e:
        parser.error(f"cannot read a quality JSON: {e}")
    rows = spread(before, after)
    if not rows:
        parser.error("no model and figure is in every file")
    print(f"{'model':14} {'figure':22} {'before runs':26} {'after runs':26} {'mean b -> a':16} within")
    for r in rows:
        runs = [" ".join(f"{v:5.1f}" for v in r[k]) for k in ("before", "after")]
        print(f"{r['model']:14} {r['figure']:22} {runs[0]:26} {runs[1]:26} "
              f"{r['before_mean']:6.2f} -> {r['after_mean']:6.2f} {'yes' if r['within'] else 'NO'}")
    inside = sum(r["within"] for r in rows)
    print(f"{inside}/{len(rows)} after means within the before runs' range")
    if args.json:
        args.json.write_text(json.dumps({"before": [str(p) for p in args.before], "after": [str(p) for p in args.after],
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
