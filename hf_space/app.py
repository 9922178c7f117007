"""Hugging Face Space entry point: the project's Gradio demo, configured by Space variables.

``FASHION_RETRIEVAL_CHECKPOINTS`` (comma-separated Hub repo ids or folders) chooses the
models; without it the embedded default is served: the one bundled in ``default/`` beside
this file (``--with-default``), installed into an empty home at start, else built on first
start. See README.md.
"""

from pathlib import Path

from fashion_retrieval.demo.app import launch_demo
from fashion_retrieval.demo.cli import build_from_args, parse_args
from fashion_retrieval.demo.space import install_bundled_default
from fashion_retrieval.serving.default import DefaultSpec

args = parse_args([])
if not args.checkpoint:
    install_bundled_default(Path(__file__).resolve().parent, args.home,
                            DefaultSpec.from_overrides(args.default_spec))
demo = build_from_args(args)

if __name__ == "__main__":
    launch_demo(demo)
