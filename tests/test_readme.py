"""README.md is a front door: short, true, and every generated table lives in docs/RESULTS.md.

Checks the README's length, that each generated block sits once in docs/RESULTS.md and never
in the README, that each writer replaces its own block of docs/RESULTS.md in place, that the
README's headline equals the comparison it is read from, and that every command, path and
link of the README and of the docs pages names something that exists.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ and scripts/ are folders beside the package
    sys.path.insert(0, str(ROOT))

README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "RESULTS.md"
PAGES = [README, *(ROOT / "docs" / n for n in ("RESULTS.md", "RECIPES.md", "DATA.md", "TRAINING.md", "DEMO.md"))]
# Every generated block of docs/RESULTS.md; a new block is added here.
BLOCKS = ("comparison", "comparison-lstm", "comparison-no-words", "default-quality", "relevance-tuning",
          "probe", "sessions", "benchmarks", "reliability")
MARKER = re.compile(r"<!-- ([\w-]+):(start|end) -->")


def _markers(text: str) -> list[tuple[str, str]]:
    return MARKER.findall(text)


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def _load_headline():
    spec = importlib.util.spec_from_file_location("headline", ROOT / "scripts" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_has_at_most_300_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines; move detail to a docs/ page (at most 300)"


def test_every_generated_block_is_in_results_and_none_in_the_readme():
    results, readme = RESULTS.read_text(encoding="utf-8"), README.read_text(encoding="utf-8")
    for name in BLOCKS:
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        assert results.count(start) == 1 and results.count(end) == 1, f"docs/RESULTS.md: block {name!r}"
        assert results.index(start) < results.index(end), f"docs/RESULTS.md: block {name!r} ends before it starts"
    assert {n for n, _ in _markers(results)} == set(BLOCKS), "register a new block of docs/RESULTS.md in BLOCKS"
    assert _markers(readme) == [("headline", "start"), ("headline", "end")], \
        "README.md holds only the headline block; generated tables go to docs/RESULTS.md"
    for page in PAGES:
        for target in re.findall(r"--readme (\S+?)[`\s]", page.read_text(encoding="utf-8")):
            assert target == "docs/RESULTS.md", f"{page.name}: a command writes into {target}, not docs/RESULTS.md"


def test_the_headline_is_read_from_the_comparison_in_results():
    headline = _load_headline()
    readme = README.read_text(encoding="utf-8")
    assert _block(readme, "headline").strip() == headline.headline(RESULTS.read_text(encoding="utf-8")), \
        "README.md's headline is stale: run python scripts/headline.py"


def test_the_headline_script_rewrites_its_block_and_names_a_missing_column(tmp_path):
    headline = _load_headline()
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- headline:start -->\nold\n<!-- headline:end -->\ntail\n")
    assert headline.main(["--results", str(RESULTS), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n<!-- headline:start -->\n| model |") and text.endswith("<!-- headline:end -->\ntail\n")
    assert "| tirg |" in text and "old" not in text
    broken = tmp_path / "RESULTS.md"
    broken.write_text(RESULTS.read_text(encoding="utf-8").replace("| control both | % of ceiling |", "| control both | share |"))
    with pytest.raises(ValueError, match="no column '% of ceiling'"):
        headline.headline(broken.read_text())


def _writers():
    """(block, function writing ``body`` into that block of ``path``) for every writer."""
    from benchmarks import report
    from benchmarks.reliability import report as reliability
    from fashion_retrieval.io_utils import replace_marked_block
    from fashion_retrieval.training import compare

    def marked(name):
        return lambda path, body: replace_marked_block(path, body, f"<!-- {name}:start -->", f"<!-- {name}:end -->")

    def comparison(name):  # compare.py and tune_relevance.py (its table plus a Reproduce line)
        return lambda path, body: compare.update_readme(path, body, "cmd", f"<!-- {name}:start -->",
                                                        f"<!-- {name}:end -->")

    def benchmarks(path, body):
        path.write_text(report.replace_block(path.read_text(encoding="utf-8"), body + "\n"), encoding="utf-8")

    return {"comparison": comparison("comparison"), "comparison-lstm": comparison("comparison-lstm"),
            "comparison-no-words": comparison("comparison-no-words"),
            "relevance-tuning": comparison("relevance-tuning"), "default-quality": marked("default-quality"),
            "probe": marked("probe"), "sessions": marked("sessions"), "benchmarks": benchmarks,
            "reliability": reliability.update_readme}


@pytest.mark.parametrize("name", BLOCKS)
def test_each_writer_replaces_its_block_of_results_in_place(name, tmp_path):
    path = tmp_path / "RESULTS.md"
    shutil.copy(RESULTS, path)
    before = path.read_text(encoding="utf-8")
    _writers()[name](path, f"NEW TABLE OF {name}")
    after = path.read_text(encoding="utf-8")
    assert f"NEW TABLE OF {name}" in _block(after, name)
    assert _markers(after) == _markers(before), "a writer added or moved markers"
    head, tail = before.split(f"<!-- {name}:start -->")[0], before.split(f"<!-- {name}:end -->")[1]
    assert after.startswith(head) and after.endswith(tail), "text outside the block changed"


def test_the_writers_with_a_default_target_write_into_results():
    from benchmarks import report, run
    from benchmarks.reliability.__main__ import _parser

    assert run.parse_args(["--json", "x.json"]).readme == RESULTS and report.RESULTS == RESULTS
    assert Path(_parser().parse_args([]).readme) == Path("docs/RESULTS.md")  # from --repo, the repository root


def test_the_benchmark_table_is_what_the_benchmark_cli_writes(tmp_path):
    """``python benchmarks/report.py results/benchmarks.json`` re-renders the table from its JSON:
    the table's figures equal the JSON's (no figure hand-edited or lost)."""
    from benchmarks import report

    path = tmp_path / "RESULTS.md"
    shutil.copy(RESULTS, path)
    report.write_readme(json.loads((ROOT / "results" / "benchmarks.json").read_text()), path)
    assert path.read_text(encoding="utf-8") == RESULTS.read_text(encoding="utf-8")


# ---- every command, path and link names something that exists ------------------------------

def _code(text: str) -> list[str]:
    """Code blocks' lines and inline code spans (a span may wrap lines), whitespace collapsed."""
    fences = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", rest)]
    return [line.split("  #")[0].strip() for f in fences for line in f.splitlines()] + spans


def _module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"python -m {module}: no such module"
    origin = Path(spec.origin)
    files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_and_link_names_something_that_exists(page):
    text = page.read_text(encoding="utf-8")
    problems = []
    for line in _code(text):
        for module, args in re.findall(r"python3? -m ([\w.]+)((?: [^|;&]*)?)", line):
            if module in {"venv", "pip", "pytest"}:
                continue
            try:
                source = _module_source(module)
            except (AssertionError, ModuleNotFoundError) as e:
                problems.append(str(e))
                continue
            if page == README:  # the README's options: each one the module (or its package) defines
                problems += [f"python -m {module}: no option {flag}" for flag in re.findall(r"(--[\w-]+)", args)
                             if f'"{flag}"' not in source]
        for path in re.findall(r"(?:python3?|launch|streamlit run|--config) ((?:[\w.-]+/)*[\w.-]+\.(?:py|yaml))", line):
            if not (ROOT / path).is_file():
                problems.append(f"{path}: no such file")
    headings = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http:", "https:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"link {target}: no such file")
        elif anchor and file.suffix == ".md":
            file_text = file.read_text(encoding="utf-8")
            slugs = headings if file == page else {
                re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", file_text, re.M)}
            if anchor not in slugs:
                problems.append(f"link {target}: no heading #{anchor}")
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)
