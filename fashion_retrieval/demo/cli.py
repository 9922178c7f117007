"""Command line of the demo (``python app.py``) and the environment-driven start of the Space.

Options fall back to environment variables, so the same code serves a laptop and a
Hugging Face Space (whose settings are environment variables):

- ``--host`` / ``GRADIO_SERVER_NAME``, ``--port`` / ``GRADIO_SERVER_PORT`` (Gradio's own);
  port 0 serves on a free port chosen by the OS, printed in Gradio's "Running on local
  URL" line (for scripts and tests that start several apps);
- ``--checkpoint`` (repeatable) / ``FASHION_RETRIEVAL_CHECKPOINTS`` (comma-separated):
  local folders or Hub repo ids; none means the embedded default;
- ``--gallery`` / ``FASHION_RETRIEVAL_GALLERY``: what to search: a FashionIQ, Fashion200k or
  synthetic root, a published data set (folder or, with ``--dataset published``, a Hub repo
  id) or any folder of photos; ``--dataset`` / ``FASHION_RETRIEVAL_DATASET`` names the layout
  (default: detected) and ``--split`` / ``FASHION_RETRIEVAL_SPLIT`` the split (default: the
  data set's evaluation split); with no checkpoint the embedded default's models search it;
- ``--home`` / ``FASHION_RETRIEVAL_HOME``: the cache folder;
- ``--default-spec`` / ``FASHION_RETRIEVAL_DEFAULT_SPEC``: fields of the embedded default to change
  (a JSON object or a file holding one), e.g. a tiny default for tests;
- ``--device`` / ``FASHION_RETRIEVAL_DEVICE``: where the models embed the gallery and the queries
  (default: ``cuda`` when available, else ``cpu``); a device this machine lacks is an error.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fashion_retrieval.data import DATASETS
from fashion_retrieval.serving.catalogue import PHOTOS


def _env_list(env: Mapping[str, str], key: str) -> list[str]:
    return [part.strip() for part in env.get(key, "").split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse the demo's options; unset options take their environment variable."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="python app.py", description="Fashion retrieval demo: search a catalogue by picture plus words."
    )
    p.add_argument("--host", default=None, help="interface to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port; 0 lets the OS choose a free one (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--checkpoint", action="append", default=None, metavar="DIR_OR_REPO",
                   help="a checkpoint folder or Hub repo id; repeat for several (default: the embedded default)")
    p.add_argument("--gallery", default=env.get("FASHION_RETRIEVAL_GALLERY") or None,
                   help="what to search: a data set root, a `publish --out` folder, a Hub dataset repo id "
                        "(with --dataset published) or any folder of photos (default: the synthetic catalogue)")
    p.add_argument("--dataset", default=env.get("FASHION_RETRIEVAL_DATASET") or None,
                   choices=[*DATASETS.names(), PHOTOS], help="layout of --gallery (default: detected)")
    p.add_argument("--split", default=env.get("FASHION_RETRIEVAL_SPLIT") or None,
                   help="split of --gallery (default: the data set's evaluation split)")
    p.add_argument("--home", default=None, help="cache folder (default: $FASHION_RETRIEVAL_HOME or ~/.cache/fashion_retrieval)")
    p.add_argument("--default-spec", default=env.get("FASHION_RETRIEVAL_DEFAULT_SPEC") or None,
                   metavar="JSON_OR_FILE",
                   help="change fields of the embedded default, e.g. '{\"products\": 60}' "
                        "(default: $FASHION_RETRIEVAL_DEFAULT_SPEC; for tests and small machines)")
    p.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    p.add_argument("--device", default=env.get("FASHION_RETRIEVAL_DEVICE") or None,
                   help="cpu, cuda, cuda:1, ... (default: $FASHION_RETRIEVAL_DEVICE, else cuda when available, else cpu)")
    args = p.parse_args(argv)
    from fashion_retrieval.devices import resolve_device

    try:
        device = str(resolve_device(args.device))
    except ValueError as err:
        p.error(f"--device: {err}")
    checkpoints = args.checkpoint or _env_list(env, "FASHION_RETRIEVAL_CHECKPOINTS")
    return argparse.Namespace(**{**vars(args), "checkpoint": checkpoints, "device": device})


def build_from_args(args: argparse.Namespace) -> Any:
    """The demo's gr.Blocks for parsed options, through the serving layer: the chosen
    checkpoints (else the embedded default's models) over the chosen gallery (else the
    default's catalogue)."""
    from fashion_retrieval.demo.app import build_demo
    from fashion_retrieval.serving.default import DefaultSpec
    from fashion_retrieval.serving.service import open_service

    service = open_service(
        args.checkpoint, gallery=args.gallery, dataset=args.dataset, split=args.split, home=args.home,
        device=getattr(args, "device", None), default_spec=DefaultSpec.from_overrides(args.default_spec),
    )
    return build_demo(service.models, dataset=service.catalogue)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, build the demo and serve it (blocks until stopped)."""
    from fashion_retrieval.demo.app import launch_demo

    args = parse_args(argv)
    demo = build_from_args(args)
    launch_demo(demo, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
