"""Side-by-side model comparison: ``streamlit run streamlit_app/app.py [-- --runs DIR ...]``.

Options after ``--``: ``--runs DIR`` (repeatable), ``--dataset``, ``--data-root``, ``--split``
for the gallery; or the environment variables ``FASHION_RETRIEVAL_RUNS`` (folders joined by
the path separator), ``FASHION_RETRIEVAL_DATASET``, ``FASHION_RETRIEVAL_DATA_ROOT``,
``FASHION_RETRIEVAL_SPLIT``. All logic lives in ``fashion_retrieval.dashboard``.
"""

import sys

from fashion_retrieval.dashboard.ui import main

main(sys.argv[1:])
