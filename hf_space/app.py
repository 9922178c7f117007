"""Hugging Face Space entry point: the project's Gradio demo, configured by Space variables.

``FASHION_RETRIEVAL_CHECKPOINTS`` (comma-separated Hub repo ids or folders) chooses the
models; without it the embedded default is built on first start. See README.md.
"""

from fashion_retrieval.demo.app import launch_demo
from fashion_retrieval.demo.cli import build_from_args, parse_args

demo = build_from_args(parse_args([]))

if __name__ == "__main__":
    launch_demo(demo)
