"""``python -m fashion_retrieval.demo``: the same as ``python app.py``."""

from fashion_retrieval.demo.cli import main

main()
