"""``python -m fashion_retrieval.evaluation.sessions --json OUT [--readme FILE]``: refinement
sessions with a simulated shopper, per model and history policy, beside the random baseline.

On the embedded default (built first if needed: its composed models over its demo gallery,
the val and test splits, never trained on) unless ``--checkpoints`` or ``--gallery`` say
otherwise (a gallery must be a rendered synthetic catalogue: the shopper reads its
attributes). ``--readme`` writes the tables for start distances 3 and 5 between
``<!-- sessions:start -->`` and ``<!-- sessions:end -->``. ``--earlier-weights`` adds the
``history`` policy at other weights of the earlier requests, to choose
``models.history.EARLIER_WEIGHT`` on; it only runs in a phrasing meant for choosing
(``--phrasing train``), never in the held-out sentences the evaluation asks in.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

README_DISTANCES = (3, 5)


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    from fashion_retrieval.data import DATASETS
    from fashion_retrieval.evaluation.sessions import CHOICE_PHRASINGS, EVALUATION_PHRASINGS

    PHRASINGS = DATASETS.get("synthetic").helper("phrasing").PHRASINGS  # noqa: N806

    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.evaluation.sessions",
                                description="Refinement sessions with a simulated shopper: success by turn, "
                                            "mean turns and the target's rank per model and history policy, "
                                            "beside a random ranking.")
    p.add_argument("--json", required=True, help="where to write the results JSON")
    p.add_argument("--readme", default=None, help="Markdown file to write the tables into, e.g. docs/RESULTS.md (start distances 3 and 5)")
    p.add_argument("--start-distance", type=int, default=5, help="attributes between start picture and target")
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--k", type=int, default=8, help="results the shopper sees per turn")
    p.add_argument("--asks", type=int, default=1, choices=(1, 2), help="attributes asked per turn")
    p.add_argument("--phrasing", default="plain", choices=PHRASINGS.names(),
                   help=f"the shopper's sentences: {' or '.join(EVALUATION_PHRASINGS)} are never trained on "
                        f"(plain: the held-out sentences with the catalogue's words); {', '.join(CHOICE_PHRASINGS)} "
                        "are for choosing settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoints", nargs="+", default=None, help="checkpoint folders or Hub repo ids "
                   "(default: the embedded default's composed models)")
    p.add_argument("--models", default=None, help="comma-separated names of the default's models to run")
    p.add_argument("--gallery", default=None, help="a rendered synthetic catalogue (default: the embedded default's)")
    p.add_argument("--split", default=None, help="the gallery's split ('+' joins splits; default: its evaluation split)")
    p.add_argument("--earlier-weights", default=None,
                   help="comma-separated weights: also the history policy at each (only with --phrasing train or dev)")
    p.add_argument("--home", default=None)
    p.add_argument("--default-spec", default=os.environ.get("FASHION_RETRIEVAL_DEFAULT_SPEC") or None,
                   help="JSON fields of the default to change (default: $FASHION_RETRIEVAL_DEFAULT_SPEC)")
    return p


def _gallery(args: argparse.Namespace, spec: Any) -> tuple[Any, Path]:
    """The data set the sessions run on, and the folder its feature cache lives in."""
    from fashion_retrieval.paths import default_dir, fashion_home

    if args.gallery is None:
        from fashion_retrieval.serving.default import default_catalogue

        return default_catalogue(args.home, spec).dataset, default_dir(args.home) / "features"
    from fashion_retrieval.serving.catalogue import open_catalogue

    dataset = open_catalogue(args.gallery, dataset="synthetic", split=args.split).dataset
    return dataset, fashion_home(args.home) / "features"


def _checkpoints(args: argparse.Namespace, spec: Any) -> dict[str, Any]:
    """Model name -> checkpoint: the given ones, or the default's composed models."""
    if args.checkpoints:
        from fashion_retrieval.serving.models import model_name_for, unique_names

        return dict(zip(unique_names([model_name_for(c) for c in args.checkpoints]), args.checkpoints, strict=True))
    from fashion_retrieval.serving.default import default_checkpoints

    built = default_checkpoints(args.home, spec)
    names = [n.strip() for n in args.models.split(",")] if args.models else list(spec.compositors)
    unknown = [n for n in names if n not in built]
    if unknown:
        raise ValueError(f"unknown default models {unknown}; valid: {sorted(built)}")
    return {n: built[n] for n in names}


def open_sources(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """Each model's ``EmbeddingSource`` over the gallery (backbone features cached), and the data set."""
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.evaluation.embeddings import ModelEmbeddings
    from fashion_retrieval.models.feature_cache import cached_image_features
    from fashion_retrieval.serving.default import DefaultSpec

    spec = DefaultSpec.from_overrides(args.default_spec)
    checkpoints = _checkpoints(args, spec)
    dataset, feature_dir = _gallery(args, spec)
    sources = {}
    for name, checkpoint in checkpoints.items():
        model = load_model(str(checkpoint)).eval()
        feats = cached_image_features(model, dataset.items, str(feature_dir))  # (N, Dimg)
        sources[name] = ModelEmbeddings(model, dataset.items, features=feats)
    return sources, dataset


def policies(args: argparse.Namespace) -> Any:
    """The policies to play: both named ones, and ``history@w`` for each ``--earlier-weights`` w."""
    from fashion_retrieval.evaluation.sessions import CHOICE_PHRASINGS, POLICIES
    from fashion_retrieval.models.history import history

    if not args.earlier_weights:
        return POLICIES
    if args.phrasing not in CHOICE_PHRASINGS:
        raise ValueError(f"--earlier-weights chooses a setting: run it in a phrasing meant for choosing "
                         f"({', '.join(CHOICE_PHRASINGS)}), never in the held-out sentences ({args.phrasing!r})")
    weights = [float(w) for w in args.earlier_weights.split(",") if w.strip()]
    return {**{p: p for p in POLICIES}, **{f"history@{w:g}": partial(history, earlier_weight=w) for w in weights}}


def main(argv: list[str] | None = None) -> int:
    """Run the sessions; write the JSON (and the tables block); 2 with a message on bad input."""
    import dataclasses

    from fashion_retrieval.evaluation.sessions import SessionSpec, markdown_table, measure_sessions
    from fashion_retrieval.evaluation.sessions.report import END, START
    from fashion_retrieval.io_utils import atomic_write_json, replace_marked_block

    args = build_parser().parse_args(argv)
    try:
        spec = SessionSpec(k=args.k, turns=args.turns, start_distance=args.start_distance, sessions=args.sessions,
                           asks=args.asks, phrasing=args.phrasing, seed=args.seed)
        chosen = policies(args)
        sources, dataset = open_sources(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = measure_sessions(sources, dataset, spec, chosen)
    atomic_write_json(args.json, report)
    reports = [report]
    if args.readme:
        reports = [report if d == spec.start_distance else
                   measure_sessions(sources, dataset, dataclasses.replace(spec, start_distance=d), chosen)
                   for d in README_DISTANCES]
    table = markdown_table(reports)
    print(table)
    if args.readme:
        command = "python -m fashion_retrieval.evaluation.sessions " + " ".join(
            argv if argv is not None else sys.argv[1:])
        replace_marked_block(Path(args.readme), f"{table}\nReproduce: `{command}`", START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
