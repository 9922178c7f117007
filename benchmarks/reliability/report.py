"""Turn recorded reliability cases into the Markdown table of docs/RESULTS.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
HEADING = "## Reliability"
TARGET_MET, TARGET_MISSED = "target met", "target missed"


@dataclass
class Row:
    """One table row: a case, the path it went through, what happened and the verdict."""

    area: str
    case: str
    via: str
    observed: str
    verdict: str


def load_results(path: str | Path) -> tuple[list[dict], dict[str, str]]:
    """``(case records, {test node id: outcome})`` from a results file; bad lines are an error."""
    cases, outcomes = [], {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not a JSON record ({err.msg})") from None
        if row.get("kind") == "outcome":
            # A failed setup or teardown overrides a passed call.
            if outcomes.get(row["test"]) in (None, "passed"):
                outcomes[row["test"]] = row["outcome"]
        elif row.get("kind") == "case":
            cases.append(row)
    return cases, outcomes


def build_rows(cases: list[dict], outcomes: dict[str, str]) -> list[Row]:
    """One row per recorded case; the verdict joins the case's own check and its test's outcome.

    A case recorded with ``target_met`` (a figure against a target, e.g. a latency, that no
    test asserts) reads "target met" or "target missed" when its test passed.
    """
    rows = []
    for c in cases:
        outcome = outcomes.get(c.get("test", ""), "not run")
        if not c.get("ok", True):
            verdict = "FAIL"
        elif outcome == "passed" and "target_met" in c:
            verdict = TARGET_MET if c["target_met"] else TARGET_MISSED
        elif outcome == "passed":
            verdict = "pass"
        else:
            verdict = {"failed": "FAIL (test failed)", "skipped": "skipped"}.get(outcome, outcome)
        rows.append(Row(c["area"], c["case"], c["via"], c["observed"], verdict))
    return rows


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _passed(row: Row) -> bool:
    return row.verdict in ("pass", TARGET_MET)


def summary_rows(rows: list[Row]) -> list[tuple[str, int, int, int]]:
    """``(area, cases, passed, failed)`` per area, in first-seen order (a met target passes;
    a missed one is neither)."""
    areas: dict[str, list[Row]] = {}
    for r in rows:
        areas.setdefault(r.area, []).append(r)
    return [
        (area, len(rs), sum(_passed(r) for r in rs), sum(r.verdict.startswith("FAIL") for r in rs))
        for area, rs in areas.items()
    ]


def render_table(rows: list[Row], *, command: str, note: str = "") -> str:
    """The Markdown block (summary per area, then every case) that goes between the reliability markers."""
    failed = sum(r.verdict.startswith("FAIL") for r in rows)
    passed = sum(_passed(r) for r in rows)
    missed = sum(r.verdict == TARGET_MISSED for r in rows)
    lines = [
        f"Produced by `{command}` (do not edit by hand): {len(rows)} cases, "
        f"{passed} pass, {failed} fail" + (f", {missed} target{'s' * (missed > 1)} missed." if missed else "."),
    ]
    if note:
        lines += ["", note]
    lines += ["", "| area | cases | pass | fail |", "|---|---:|---:|---:|"]
    lines += [f"| {_cell(a)} | {n} | {p} | {f} |" for a, n, p, f in summary_rows(rows)]
    lines += ["", "| area | case | through | what happened | result |", "|---|---|---|---|---|"]
    lines += [
        f"| {_cell(r.area)} | {_cell(r.case)} | {_cell(r.via)} | {_cell(r.observed)} | {r.verdict} |"
        for r in rows
    ]
    return "\n".join(lines)


def update_readme(readme: str | Path, block: str) -> Path:
    """Put ``block`` between the reliability markers; add the section at the end if absent."""
    from fashion_retrieval.io_utils import atomic_write_text

    path = Path(readme)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    section = f"{START}\n{block}\n{END}"
    if START in text and END in text and text.index(START) < text.index(END):
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        new = before + section + after
    else:
        new = text.rstrip("\n") + ("\n\n" if text.strip() else "") + f"{HEADING}\n\n{section}\n"
    return atomic_write_text(path, new)
