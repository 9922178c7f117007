"""Gradio demo: ``python app.py [--host H] [--port P] [--checkpoint DIR_OR_REPO ...] [--gallery ROOT]``.

With no checkpoint it builds (first start) or loads the embedded default, cached under
``$FASHION_RETRIEVAL_HOME`` (default ``~/.cache/fashion_retrieval``). All logic lives in
``fashion_retrieval.demo``; see ``python app.py --help``.
"""

from fashion_retrieval.demo.cli import main

if __name__ == "__main__":
    main()
