"""The Streamlit comparison dashboard's logic: results, shopper reports, refinement sessions,
curves, embedding maps, query browser.

Only the page modules import Streamlit: :mod:`~fashion_retrieval.dashboard.ui` (the sidebar
and ``main``, which ``streamlit_app/app.py`` calls), :mod:`~fashion_retrieval.dashboard.views`,
:mod:`~fashion_retrieval.dashboard.refinement_view` and :mod:`~fashion_retrieval.dashboard.loaders` (the cached loaders both use). Galleries and
models come through the serving layer (``fashion_retrieval.serving``), as in the demo.
"""

from .browse import compare_models, hits_frame, is_correct
from .curves import combine_runs, load_metrics, metric_groups
from .embedmap import color_options, embedding_frame, project_gallery
from .projection import PROJECTIONS, ProjectionUnavailable, available_projections, project
from .replay import Replay, replay, replay_choices
from .results import (
    EvalResult,
    ResultFileError,
    category_table,
    group_results,
    is_recall_metric,
    load_eval_result,
    recall_long,
    recall_table,
)
from .sessions import (
    SessionsReport,
    load_sessions_report,
    sessions_payload,
    sessions_table,
    success_long,
)
from .shopper import (
    ShopperReport,
    control_long,
    control_table,
    load_shopper_report,
    one_gallery_table,
    phrasing_table,
    report_kind,
    words_table,
)
from .sources import Discovery, default_result_dirs, is_checkpoint_dir, scan_result_dirs

__all__ = [
    "PROJECTIONS",
    "Discovery",
    "EvalResult",
    "ProjectionUnavailable",
    "Replay",
    "ResultFileError",
    "SessionsReport",
    "ShopperReport",
    "available_projections",
    "category_table",
    "color_options",
    "combine_runs",
    "compare_models",
    "control_long",
    "control_table",
    "default_result_dirs",
    "embedding_frame",
    "group_results",
    "hits_frame",
    "is_checkpoint_dir",
    "is_correct",
    "is_recall_metric",
    "load_eval_result",
    "load_metrics",
    "load_sessions_report",
    "load_shopper_report",
    "metric_groups",
    "one_gallery_table",
    "phrasing_table",
    "project",
    "project_gallery",
    "recall_long",
    "recall_table",
    "replay",
    "replay_choices",
    "report_kind",
    "scan_result_dirs",
    "sessions_payload",
    "sessions_table",
    "success_long",
    "words_table",
]
