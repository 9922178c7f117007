"""Shared pytest fixtures and hooks (keep generic: every test module may use them).

- Every test gets its own ``$FASHION_RETRIEVAL_HOME`` (autouse ``fashion_home``); caches that
  several tests share on purpose live in the session-scoped ``shared_home``.
- ``REQUIRE_ALL=1`` (set by ``.ci/run``) turns every skip into a failure that names its
  reason; without it skips are allowed and summarised at the end of the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FASHIONIQ_ANNOTATIONS = Path(
    os.environ.get("FASHIONIQ_ANNOTATIONS", REPO.parent / "shared" / "data" / "fashioniq")
)
REQUIRE_ALL = os.environ.get("REQUIRE_ALL", "").strip() not in ("", "0")
HOME_ENV = "FASHION_RETRIEVAL_HOME"
# What fixtures wider than one test see as the home: writing there fails, so no cache is
# shared by accident (use ``shared_home`` for one that is shared on purpose).
NO_SHARED_HOME = "/sys/fashion_retrieval_home_is_per_test"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # lets tests `import helpers`


# ---------------------------------------------------------------- homes
@pytest.fixture(scope="session", autouse=True)
def _no_home_outside_tests():
    """Outside a test (module or session fixtures) the home is an unwritable path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HOME_ENV, NO_SHARED_HOME)
        yield


@pytest.fixture(autouse=True)
def fashion_home(tmp_path_factory, monkeypatch) -> Path:
    """This test's own ``$FASHION_RETRIEVAL_HOME``: an empty folder (not inside ``tmp_path``)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv(HOME_ENV, str(home))
    return home


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory) -> Path:
    """A home for heavy caches (rendered catalogues, trained defaults) built once per run.

    Tests that use it must only add to it what any other user of it may see; pass it
    explicitly (``home=`` argument or an environment for a subprocess).
    """
    return tmp_path_factory.mktemp("shared_home")


@pytest.fixture
def fashioniq_annotations() -> Path:
    """The real FashionIQ annotation folder (read-only).

    Absent, the test is skipped, or fails under ``REQUIRE_ALL=1`` (CI points
    ``FASHIONIQ_ANNOTATIONS`` at ``../shared/data/fashioniq``).
    """
    if not (FASHIONIQ_ANNOTATIONS / "captions").is_dir():
        reason = (f"real FashionIQ annotations not found at {FASHIONIQ_ANNOTATIONS} "
                  "(set FASHIONIQ_ANNOTATIONS)")
        if REQUIRE_ALL:
            pytest.fail(f"REQUIRE_ALL=1: {reason}", pytrace=False)
        pytest.skip(reason)
    return FASHIONIQ_ANNOTATIONS


# ---------------------------------------------------------------- skips
_FAILED_SKIPS = pytest.StashKey[list]()  # (node id, reason) of each skip failed under REQUIRE_ALL


def _skip_reason(report) -> str:
    """The reason of a skipped report (pytest keeps it as ``(path, line, reason)``)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip(report, config) -> None:
    """Turn a skipped report into a failed one that says why (under ``REQUIRE_ALL=1``)."""
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = f"skipped under REQUIRE_ALL=1, which allows no skip: {reason}"
    config.stash.setdefault(_FAILED_SKIPS, []).append((report.nodeid, reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``REQUIRE_ALL=1`` a skipped test (setup or call) is reported as failed."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report, item.config)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Under ``REQUIRE_ALL=1`` a module skipped at collection is an error too."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped:
        _fail_skip(report, collector.config)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List the skips that failed under REQUIRE_ALL, or count the allowed ones locally."""
    failed = config.stash.get(_FAILED_SKIPS, [])
    if failed:
        terminalreporter.section("skips turned into failures (REQUIRE_ALL=1)", red=True)
        for nodeid, reason in failed:
            terminalreporter.line(f"{nodeid}: {reason}")
        return
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:  # their reasons are in the short summary above (-ra)
        terminalreporter.line(f"{len(skipped)} skipped here; CI (REQUIRE_ALL=1) fails on any skip.",
                              yellow=True)
