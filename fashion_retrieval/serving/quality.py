"""How well the embedded default answers a shopper, model by model.

``python -m fashion_retrieval.serving.quality --json results/default_quality.json [--readme docs/RESULTS.md]``

Builds (or loads) the embedded default, then measures each of its models on the demo's
own gallery (the val and test splits, never trained on) with
:mod:`fashion_retrieval.evaluation.shopper`: one-gallery recall (R@1 first), composition
control in held-out plain words, the phrasing gap, and words to image ("red dress") for
every model. Writes the JSON and, with ``--readme``, a table between
``<!-- default-quality:start -->`` and ``<!-- default-quality:end -->``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- default-quality:start -->", "<!-- default-quality:end -->"


def measure_default(home: str | Path | None = None, spec: Any = None, *, n: int = 400, seed: int = 0) -> dict[str, Any]:
    """Shopper metrics of every model of the default (built first if needed)."""
    from fashion_retrieval.evaluation.embeddings import ModelEmbeddings
    from fashion_retrieval.evaluation.shopper import shopper_metrics
    from fashion_retrieval.models.feature_cache import cached_image_features
    from fashion_retrieval.serving.default import DefaultSpec, load_default

    spec = spec or DefaultSpec()
    bundle = load_default(home, spec)
    dataset = bundle.dataset
    rows = {}
    for name, retriever in bundle.models.items():
        model = retriever.model
        feats = cached_image_features(model, dataset.items, str(bundle.root / "features"))
        source = ModelEmbeddings(model, dataset.items, features=feats)
        rows[name] = shopper_metrics(source, dataset, n=n, seed=seed, text_queries=True)
    return {"spec": spec.to_dict(), "gallery_images": len(dataset.items), "queries": len(dataset.triplets),
            "seed": seed, "models": rows}


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    any_row = next(iter(report["models"].values()))
    c = any_row["control"]
    lines = [
        f"Embedded default ({report['spec']['products']} products, `{report['spec']['preset']}` preset), "
        f"its demo gallery of {report['gallery_images']} images (val + test splits, never trained on), "
        f"{report['queries']} composed queries. Control: {c['queries']} pictures with a one-attribute "
        f"change in held-out plain words, share of the top {c['k']} with the picture's type and the asked "
        f"value (ceiling {c['both_ceiling']:.1f}). Words to image: share of the top 4 of "
        "\"<colour> <garment>\" / \"<pattern> <garment>\" that has both. Percent.",
        "",
        "| model | one gallery R@1 | R@10 | control both | % of ceiling | asked | type kept "
        "| phrasing R@10 train | held out | colour + garment | pattern + garment |",
        "|---|" + "---:|" * 10,
    ]
    for name, r in report["models"].items():
        one, ctl, ph, w = r["one_gallery"], r["control"], r["phrasing"], r.get("words_to_image", {})
        cells = [one["R@1"], one["R@10"], ctl["both"], ctl["both_of_ceiling"], ctl["asked"], ctl["type"],
                 ph["train"]["R@10"], ph["heldout"]["R@10"], w.get("color", {}).get("share"),
                 w.get("pattern", {}).get("share")]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in cells) + " |")
    parts = {n: r["phrasing"] for n, r in report["models"].items() if "heldout_words" in r["phrasing"]}
    if parts:
        lines += [
            "",
            "The phrasing gap in parts (one-gallery R@10): the training phrasing; the held-out "
            "sentences with the catalogue's own words; the training sentences with the held-out "
            "words; both held out (with a typo in one request of five); and the training sentences "
            "with the development words that word-knowledge choices are made on.",
            "",
            "| model | training | held-out sentences | held-out words | both held out | development words |",
            "|---|" + "---:|" * 5,
        ]
        for name, ph in parts.items():
            cells = [ph[k]["R@10"] for k in ("train", "plain", "heldout_words", "heldout", "dev")]
            lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from fashion_retrieval.io_utils import atomic_write_json, replace_marked_block
    from fashion_retrieval.serving.default import DefaultSpec

    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.serving.quality", description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True)
    p.add_argument("--readme", default=None)
    p.add_argument("--home", default=None)
    p.add_argument("--default-spec", default=os.environ.get("FASHION_RETRIEVAL_DEFAULT_SPEC") or None,
                   help="JSON fields of the default to change (default: $FASHION_RETRIEVAL_DEFAULT_SPEC)")
    p.add_argument("--queries", type=int, default=400, help="composition-control requests")
    args = p.parse_args(argv)
    report = measure_default(args.home, DefaultSpec.from_overrides(args.default_spec), n=args.queries)
    atomic_write_json(args.json, report)
    table = markdown_table(report)
    print(table)
    if args.readme:
        command = f"python -m fashion_retrieval.serving.quality --json {args.json} --readme {args.readme}"
        replace_marked_block(Path(args.readme), f"{table}\nReproduce: `{command}`", START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
