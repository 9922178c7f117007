"""``python -m benchmarks.reliability [--readme docs/RESULTS.md]``: run the reliability tests, write the table."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.reliability.recorder import RESULTS_ENV
from benchmarks.reliability.report import (
    build_rows,
    load_results,
    render_table,
    update_readme,
)

TESTS = ("tests/test_bad_input.py", "tests/test_properties.py", "tests/test_faults.py", "tests/test_load.py")
LOAD_ENV = "FASHION_RETRIEVAL_LOAD_SEARCHES"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__)
    p.add_argument("--readme", default="docs/RESULTS.md",
                   help="Markdown file to update (section 'Reliability'; default: docs/RESULTS.md)")
    p.add_argument("--results", default=None, help="keep the JSON-lines results here (default: a temp file)")
    p.add_argument("--from-results", default=None, help="render an existing results file, run nothing")
    p.add_argument("--full", action="store_true", help="load test at full size: 16 clients x 50 searches")
    p.add_argument("--repo", default=".", help="repository root holding tests/ (default: the current folder)")
    p.add_argument("--tests", nargs="+", default=list(TESTS), metavar="FILE",
                   help="reliability test files to run, relative to --repo (default: all four; "
                        "e.g. tests/test_properties.py alone for a run of seconds)")
    return p


def run_tests(results: Path, repo: Path, full: bool, tests: tuple[str, ...] | list[str] = TESTS) -> int:
    """Run the reliability test files under pytest with the recorder on; returns pytest's code."""
    env = {**os.environ, RESULTS_ENV: str(results.resolve()), "HF_HUB_OFFLINE": "1"}
    if full:
        env[LOAD_ENV] = "50"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "benchmarks.reliability.plugin", *tests]
    return subprocess.call(cmd, cwd=repo, env=env)


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code is pytest's (0 when every reliability test passed)."""
    args = _parser().parse_args(argv)
    code = 0
    if args.from_results:
        results = Path(args.from_results)
    else:
        if args.results:
            results = Path(args.results)
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text("")
        else:
            fd, name = tempfile.mkstemp(prefix="reliability-", suffix=".jsonl")
            os.close(fd)
            results = Path(name)
        code = run_tests(results, Path(args.repo), args.full, args.tests)
    cases, outcomes = load_results(results)
    if not cases:
        print(f"error: no reliability cases recorded in {results}", file=sys.stderr)
        return code or 1
    note = (
        "Each row is one case a test tried, the code path it went through and what a user "
        "would see. The load test's size is in its rows; `--full` runs the issue's 16 clients "
        f"x 50 searches (the default run uses {LOAD_ENV} or 10, for a 2-core CI box). It runs "
        "the same requests twice, from a process of their own: against the demo serving each "
        "search alone, then against the demo as shipped (concurrent searches batched into one "
        "model pass); latency and throughput are figures of this machine, judged against the "
        "target (\"target met\" / \"target missed\"), never asserted."
    )
    command = "python -m benchmarks.reliability --readme docs/RESULTS.md" + (" --full" if args.full else "")
    if list(args.tests) != list(TESTS):
        command += " --tests " + " ".join(args.tests)
    block = render_table(build_rows(cases, outcomes), command=command, note=note)
    update_readme(args.readme, block)
    print(f"wrote {len(cases)} cases to {args.readme} (results: {results})")
    return code


if __name__ == "__main__":
    sys.exit(main())
