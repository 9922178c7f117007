"""Tune the relevance term's weight for each compositor, by one rule for all.

    python -m fashion_retrieval.training.tune_relevance --json results/relevance_tuning.json --readme docs/RESULTS.md

Every compositor is trained and evaluated as in ``python -m fashion_retrieval.training.compare``
(same catalogue, features, pairs and budget) without the term and at each weight of
``GRID``. Its weight is the largest of the grid whose one-gallery R@1 is at least its own
without the term (0 when none is): the term may buy composition control, not at the cost
of the shop's first result. The chosen weights are ``relevance_weight`` of ``training/configs/recipes/shopper.yaml``; this
command says whether they still follow from the rule (exit status 3 when not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fashion_retrieval.training import compare
from fashion_retrieval.training.recipe import load_recipe

GRID = (0.5, 1.0, 1.5)
STALE = 3  # the exit status when the weights in use no longer follow from the rule


def relevance_weights(models: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The relevance weight in use (training/configs/recipes/shopper.yaml) of each compositor of ``models``."""
    table = load_recipe()["compositors"]
    return {m: float(table.get(m, {}).get("relevance_weight", 0.0)) for m in models}


def choose(results: dict[str, dict[float, dict[str, Any]]], grid: tuple[float, ...] = GRID) -> dict[str, float]:
    """Each model's weight: the largest of ``grid`` whose one-gallery R@1 >= its R@1 at weight 0."""
    out = {}
    for model, by_weight in results.items():
        base = by_weight[0.0]["one_gallery"]["R@1"]
        kept = [w for w in grid if w in by_weight and by_weight[w]["one_gallery"]["R@1"] >= base]
        out[model] = max(kept) if kept else 0.0
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """One row per model and weight: one-gallery R@1, control (% of ceiling), held-out phrasing R@10."""
    lines = [
        f"Each compositor without the relevance term and at weights {', '.join(f'{w:g}' for w in report['grid'])}, "
        f"trained as in the comparison ({report['steps']} steps, seed {report['seed']}). Chosen (**bold**): the "
        "largest weight whose one-gallery R@1 is at least the model's own without the term.",
        "",
        "| model | weight | one gallery R@1 | control, % of ceiling | held-out phrasing R@10 |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, by_weight in report["results"].items():
        for w, r in sorted(by_weight.items(), key=lambda kv: float(kv[0])):
            mark = "**" if float(w) == report["chosen"][model] else ""
            lines.append(f"| {model} | {mark}{float(w):g}{mark} | {r['one_gallery']['R@1']:.1f} | "
                         f"{r['control']['both_of_ceiling']:.1f} | {r['phrasing']['heldout']['R@10']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.training.tune_relevance",
                                description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="where to write the results JSON")
    p.add_argument("--readme", default=None, help="README to write the table into (block relevance-tuning)")
    p.add_argument("--models", default=",".join(compare.DEFAULT_MODELS), help="comma-separated compositors")
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="runs/comparison", help="data, feature cache and runs (the comparison's)")
    p.add_argument("--image-encoder", default=None, help="tiny_cnn for quick checks (random weights); default: the recipe's")
    args = p.parse_args(argv)
    from fashion_retrieval.io_utils import atomic_write_json

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    results: dict[str, dict[float, dict[str, Any]]] = {m: {} for m in models}
    for weight in (0.0, *GRID):
        report = compare.run_comparison(models, Path(args.work_dir), steps=args.steps, seed=args.seed,
                                        image_encoder=args.image_encoder, relevance=weight)
        for row in report["results"]:
            results[row["model"]][weight] = {k: row[k] for k in ("one_gallery", "control", "phrasing")}
    chosen = choose(results)
    report = {"grid": list(GRID), "steps": args.steps, "seed": args.seed, "results": results, "chosen": chosen,
              "in_use": relevance_weights(models)}
    atomic_write_json(args.json, report)
    table = markdown_table(report)
    print(table)
    if args.readme:
        command = "python -m fashion_retrieval.training.tune_relevance " + " ".join(
            argv if argv is not None else sys.argv[1:])
        compare.update_readme(Path(args.readme), table, command, "<!-- relevance-tuning:start -->",
                              "<!-- relevance-tuning:end -->")
    stale = {m: (report["in_use"][m], w) for m, w in chosen.items() if report["in_use"][m] != w}
    if stale:
        print(f"[tune_relevance] the weights in use differ from the rule's choice (in use, chosen): {stale}",
              file=sys.stderr)
        return STALE
    return 0


if __name__ == "__main__":
    sys.exit(main())
