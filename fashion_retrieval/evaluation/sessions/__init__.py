"""A shopper who keeps talking: refinement sessions with a simulated shopper, measured.

``python -m fashion_retrieval.evaluation.sessions --json OUT [--readme FILE]`` (the CLI is
``__main__.py``; on the embedded default unless checkpoints are given).

- :mod:`.simulate`: the simulated shopper (sees the top k, picks the result closest to a
  hidden target by attributes, asks for one attribute that still differs in held-out
  words) and the session loop, on any ``EmbeddingSource`` under a history policy of
  ``models/history.py`` (the demo's ``Retriever.search_session`` uses the same);
- :mod:`.report`: success@T, mean turns and the target's rank per model and policy, with
  the random baseline; one session replayed as ids; the README table.
"""

from fashion_retrieval.evaluation.sessions.report import (
    POLICIES,
    RANDOM,
    SessionReport,
    markdown_table,
    measure_sessions,
    summarise,
)
from fashion_retrieval.evaluation.sessions.simulate import (
    CHOICE_PHRASINGS,
    EVALUATION_PHRASINGS,
    PolicyRanker,
    RandomRanker,
    SessionSpec,
    attribute_distance,
    draw_sessions,
    run_sessions,
)

__all__ = [
    "CHOICE_PHRASINGS", "EVALUATION_PHRASINGS", "POLICIES", "RANDOM", "PolicyRanker", "RandomRanker",
    "SessionReport", "SessionSpec", "attribute_distance", "draw_sessions", "markdown_table",
    "measure_sessions", "run_sessions", "summarise",
]
