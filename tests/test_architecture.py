"""The package's layering, read from the source with ``ast`` (nothing is imported).

The graph
---------
Nodes are the modules of ``fashion_retrieval/`` and ``benchmarks/`` (a package is its
``__init__.py``), plus the front ends ``app.py``, ``streamlit_app/*.py``, ``hf_space/*.py``
and ``training/*.py`` as leaves: their imports are read, nothing imports them. ``tests/`` is
not part of the graph (tests may import anything).

Edges are every ``import``/``from ... import`` statement, at module level *and* inside
functions or under ``if TYPE_CHECKING:`` (an import hidden there is still a dependency, and
still a circle when the other side imports back: moving an import into a function, or
behind ``TYPE_CHECKING`` for an annotation, does not break a circle; the report marks such
edges):

- ``import a.b.c``                    -> ``a.b.c``
- ``from a.b import c``               -> ``a.b.c`` when that is a module, else ``a.b``
- ``from . import x`` / ``from ..y import z``: resolved against the importing module's
  package first (for an ``__init__.py`` its own package), then as above.

Only targets inside the graph count (third-party and standard-library imports are not
layering). Dynamic imports (``importlib.import_module("...")``, e.g. ``benchmarks/run.py``'s
step list) are not seen.

Implicit parent packages
------------------------
Importing ``a.b.c`` makes Python run ``a/__init__.py`` and ``a/b/__init__.py`` first. Those
*implied* parent edges are not counted as cycle edges. If they were, every package whose
``__init__`` imports its own children (``evaluation/__init__`` -> ``evaluation.protocols``
-> ``evaluation.base``, whose import implies ``evaluation/__init__``) would be a circle,
yet it is harmless: when the child runs, the parent is already in ``sys.modules`` and is not
run again, and the child reads nothing from the parent's namespace. A child that *does*
read from its parent (``from a import name`` where ``name`` is defined in ``a/__init__``, or
``import a`` then ``a.name``) writes an explicit edge to ``a``, and that edge counts.

The rules
---------
1. No cycle between modules (each is printed with the file and line of every edge, one
   shortest cycle per tangle, with the tangle's other modules; a module importing itself
   is a cycle of one).
2. A UI package (``fashion_retrieval.demo``, ``fashion_retrieval.dashboard``) imports
   neither the other UI package nor ``fashion_retrieval.training``: both UIs sit on the
   library and its serving layer, and training is a separate program.
3. Every backticked repository path in ``docs/ARCHITECTURE.md`` exists, and the page names
   no path outside the repository (``../...``, absolute paths of two or more parts: a lone
   ``/name`` reads as a URL route). A backticked token is a
   repository path when it has no spaces, placeholders or variables, contains a ``/``, and
   ends in ``/`` or a file suffix (``.py``, ``.md``...): ``fashion_retrieval/checkpoints.py``,
   ``synthetic/``. A path relative to a package (``synthetic/pairs.py``) exists when some
   repository path ends with it. Runtime locations (``~/.cache/...``, ``$VAR/...``) are
   where the programs write, not repository files, and are not checked.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fashion_retrieval", "benchmarks")
FRONT_END_FILES = ("app.py",)
FRONT_END_DIRS = ("streamlit_app", "hf_space", "training")
UI_PACKAGES = ("fashion_retrieval.demo", "fashion_retrieval.dashboard")
TRAINING = "fashion_retrieval.training"
SYNTHETIC = "fashion_retrieval.data.synthetic"  # the synthetic catalogue, behind its data set entry
DATA_REGISTRY = "fashion_retrieval.data"  # where that entry is registered
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
SKIPPED_DIRS = {"__pycache__", ".venv", "node_modules"}


@dataclass(frozen=True)
class Edge:
    """One import statement's dependency of ``source`` on ``target``."""

    source: str
    target: str
    file: str  # relative to the root it was read from
    line: int
    function: str | None  # the enclosing function, None at module level
    type_checking: bool = False  # under ``if TYPE_CHECKING:``: for annotations only

    def __str__(self) -> str:
        where = f" (inside {self.function})" if self.function else ""
        where += " (under TYPE_CHECKING)" if self.type_checking else ""
        return f"{self.source} -> {self.target}   [{self.file}:{self.line}{where}]"


@dataclass
class ImportGraph:
    """Modules (name -> file) and the explicit import edges between them."""

    root: Path
    modules: dict[str, Path]
    leaves: set[str]  # the front ends: read, never imported
    edges: list[Edge]

    def targets(self, source: str) -> set[str]:
        return {e.target for e in self.edges if e.source == source}


def _module_name(path: Path, root: Path) -> str:
    """``fashion_retrieval/evaluation/base.py`` -> ``fashion_retrieval.evaluation.base``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.rglob("*.py")):
        if not SKIPPED_DIRS.intersection(path.relative_to(folder).parts):
            yield path


def discover_modules(
    root: Path,
    packages: Iterable[str] = PACKAGES,
    front_end_files: Iterable[str] = FRONT_END_FILES,
    front_end_dirs: Iterable[str] = FRONT_END_DIRS,
) -> tuple[dict[str, Path], set[str]]:
    """The package modules by dotted name, plus the front ends (named by their path)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in _python_files(root / package):
            modules[_module_name(path, root)] = path
    leaves: set[str] = set()
    for name in front_end_files:
        if (root / name).is_file():
            leaves.add(name)
            modules[name] = root / name
    for folder in front_end_dirs:
        for path in sorted((root / folder).glob("*.py")):  # the scripts, not sub-folders
            name = path.relative_to(root).as_posix()
            leaves.add(name)
            modules[name] = path
    return modules, leaves


def _package_of(module: str, path: Path) -> str:
    """The package a relative import in ``module`` starts from."""
    if path.name == "__init__.py":
        return module
    return module.rpartition(".")[0]


class _ImportVisitor(ast.NodeVisitor):
    """Every import statement with its line, enclosing function and ``TYPE_CHECKING`` guard."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, str | None, bool]] = []
        self._functions: list[str] = []
        self._type_checking = 0

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        self._type_checking += guarded
        for child in node.body:
            self.visit(child)
        self._type_checking -= guarded
        for child in node.orelse:
            self.visit(child)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._functions.append(node.name)
        self.generic_visit(node)
        self._functions.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.found.append((node, ".".join(self._functions) or None, self._type_checking > 0))

    visit_Import = _import
    visit_ImportFrom = _import


def _resolve(node: ast.Import | ast.ImportFrom, module: str, path: Path,
             known: dict[str, Path]) -> list[str]:
    """The graph modules one import statement names (see the module docstring)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if node.level:
        base_parts = _package_of(module, path).split(".") if module else []
        if node.level > 1:
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if alias.name != "*" and sub in known:
            out.append(sub)
        elif base in known:
            out.append(base)
    return out


def build_graph(root: Path = ROOT, **where: Iterable[str]) -> ImportGraph:
    """Read every module's imports (``where``: ``discover_modules``'s folder options)."""
    modules, leaves = discover_modules(root, **where)
    importable = {name: p for name, p in modules.items() if name not in leaves}
    edges: list[Edge] = []
    for module, path in modules.items():
        visitor = _ImportVisitor()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        rel = path.relative_to(root).as_posix()
        for node, function, type_only in visitor.found:
            for target in dict.fromkeys(_resolve(node, module, path, importable)):
                if target != module or node.level == 0:  # `from . import x` in a/__init__ is a->a.x
                    edges.append(Edge(module, target, rel, node.lineno, function, type_only))
    return ImportGraph(root, modules, leaves, edges)


def _strongly_connected(nodes: Iterable[str], adj: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(adj.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adj.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


@dataclass(frozen=True)
class Cycle:
    """A shortest import cycle, and every module of the tangle it belongs to."""

    edges: list[Edge]
    group: list[str]  # the strongly connected component: breaking ``edges`` may leave others

    @property
    def modules(self) -> list[str]:
        return [e.source for e in self.edges]


def find_cycles(graph: ImportGraph) -> list[Cycle]:
    """One shortest cycle per strongly connected component (self-imports included)."""
    adj: dict[str, set[str]] = {}
    first_edge: dict[tuple[str, str], Edge] = {}
    for e in graph.edges:
        adj.setdefault(e.source, set()).add(e.target)
        first_edge.setdefault((e.source, e.target), e)
    cycles = []
    for component in _strongly_connected(graph.modules, adj):
        members = set(component)
        start = component[0]
        if len(component) == 1 and start not in adj.get(start, set()):
            continue
        # Breadth-first from start back to start, inside the component.
        came_from: dict[str, str] = {}
        queue = deque([start])
        end = None
        while queue and end is None:
            node = queue.popleft()
            for child in sorted(adj.get(node, ())):
                if child == start:
                    end = node
                    break
                if child in members and child not in came_from:
                    came_from[child] = node
                    queue.append(child)
        assert end is not None, component
        path = [end]
        while path[-1] != start:
            path.append(came_from[path[-1]])
        path.reverse()  # start ... end, and end -> start closes it
        hops = list(zip(path, [*path[1:], start], strict=True))
        cycles.append(Cycle([first_edge[hop] for hop in hops], component))
    return cycles


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(graph: ImportGraph) -> list[Edge]:
    """Edges from a UI package into the other UI package or into training."""
    bad = []
    for e in graph.edges:
        for ui in UI_PACKAGES:
            if not _in_package(e.source, ui):
                continue
            forbidden = [TRAINING, *(other for other in UI_PACKAGES if other != ui)]
            if any(_in_package(e.target, f) for f in forbidden):
                bad.append(e)
    return bad


def synthetic_violations(graph: ImportGraph, package: str = SYNTHETIC, registration: str = DATA_REGISTRY) -> list[Edge]:
    """Edges into the synthetic catalogue's ``package`` from outside it and its data set entry's
    ``registration``: everything else reaches it through the entry (``DATASETS.get("synthetic")``)."""
    return [e for e in graph.edges if _in_package(e.target, package)
            and not _in_package(e.source, package) and e.source != registration]


def _fail(title: str, lines: Iterable[str]) -> None:
    """Fail with the findings one a line (no assertion-rewriting noise)."""
    body = "\n".join(f"  {line}" for line in lines)
    pytest.fail(f"{title}\n{body}", pytrace=False)


def _format_cycle(cycle: Cycle) -> str:
    lines = [" -> ".join([*cycle.modules, cycle.modules[0]])]
    lines += [f"      {e}" for e in cycle.edges]
    if len(cycle.group) > len(cycle.edges):
        lines.append(f"      (the same tangle also holds: {', '.join(sorted(set(cycle.group) - set(cycle.modules)))})")
    return "\n".join(lines)


# ---- the checker itself, on small made-up trees -------------------------------------------


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _toy_graph(root: Path, files: dict[str, str]) -> ImportGraph:
    _write_tree(root, files)
    return build_graph(root, packages=("pkg",), front_end_files=("app.py",), front_end_dirs=())


def test_the_checker_resolves_imports_and_finds_a_cycle_hidden_in_a_function(tmp_path):
    graph = _toy_graph(tmp_path, {
        "pkg/__init__.py": "from pkg.a import f\nfrom . import b\n",
        "pkg/a.py": "import os\nfrom .b import g\n\ndef f():\n    return g()\n",
        "pkg/b.py": "def g():\n    from pkg import a\n    return a\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import f\nfrom pkg.sub import c as again\nimport pkg.b\n",
        "app.py": "from pkg.sub.c import f\n",
    })
    assert graph.targets("pkg") == {"pkg.a", "pkg.b"}  # `from . import b` is the module b
    assert graph.targets("pkg.a") == {"pkg.b"}  # os is not in the graph
    assert graph.targets("pkg.sub.c") == {"pkg.a", "pkg.sub.c", "pkg.b"}
    assert graph.targets("app.py") == {"pkg.sub.c"}
    inside = [e for e in graph.edges if e.source == "pkg.b"]
    assert [(e.target, e.function, e.line) for e in inside] == [("pkg.a", "g", 2)]
    cycles = sorted((c.modules for c in find_cycles(graph)), key=len)
    # a <-> b (through b's function-level import), and c importing itself.
    assert cycles == [["pkg.sub.c"], ["pkg.a", "pkg.b"]]


def test_a_package_importing_its_children_is_no_cycle_but_reading_the_parent_is(tmp_path):
    files = {
        "pkg/__init__.py": "from pkg.a import f\nfrom pkg.b import g\n",
        "pkg/a.py": "def f():\n    return 1\n",
        "pkg/b.py": "from pkg.a import f\n\ndef g():\n    return f()\n",
    }
    assert find_cycles(_toy_graph(tmp_path / "fine", files)) == []
    files["pkg/b.py"] = "from pkg import f\n\ndef g():\n    return f()\n"  # reads pkg's namespace
    cycles = find_cycles(_toy_graph(tmp_path / "circle", files))
    assert [c.modules for c in cycles] == [["pkg", "pkg.b"]]
    assert "pkg.b -> pkg   [pkg/b.py:1]" in _format_cycle(cycles[0])


def test_an_import_for_annotations_only_still_closes_a_cycle(tmp_path):
    graph = _toy_graph(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\nelse:\n    import os\n",
        "pkg/b.py": "from pkg.a import f\n",
    })
    (cycle,) = find_cycles(graph)
    assert "pkg.a -> pkg.b   [pkg/a.py:3 (under TYPE_CHECKING)]" in _format_cycle(cycle)
    assert [e.type_checking for e in graph.edges] == [True, False]


def test_a_tangle_of_several_cycles_names_every_module_in_it(tmp_path):
    graph = _toy_graph(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from pkg import a, c\n",
        "pkg/c.py": "def f():\n    import pkg.b\n",
    })
    (cycle,) = find_cycles(graph)
    assert cycle.modules == ["pkg.a", "pkg.b"] and cycle.group == ["pkg.a", "pkg.b", "pkg.c"]
    assert "also holds: pkg.c" in _format_cycle(cycle)


def test_the_layer_rule_flags_ui_to_ui_and_ui_to_training(tmp_path):
    edges = [
        Edge("fashion_retrieval.dashboard.models", "fashion_retrieval.demo.loading", "x.py", 1, None),
        Edge("fashion_retrieval.demo.handlers", "fashion_retrieval.training.config", "y.py", 2, "f"),
        Edge("fashion_retrieval.demo.handlers", "fashion_retrieval.demo.loading", "y.py", 3, None),
        Edge("fashion_retrieval.dashboard", "fashion_retrieval.data", "z.py", 4, None),
        Edge("fashion_retrieval.training.cli", "fashion_retrieval.demo", "w.py", 5, None),
    ]
    graph = ImportGraph(tmp_path, {}, set(), edges)
    assert layer_violations(graph) == edges[:2]


def test_the_synthetic_rule_flags_imports_from_outside_its_entry(tmp_path):
    graph = _toy_graph(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/data/__init__.py": "def load():\n    from pkg.data.synthetic import load_synthetic\n",
        "pkg/data/synthetic/__init__.py": "from . import pairs\n",
        "pkg/data/synthetic/pairs.py": "from pkg.data.synthetic import attributes\n",
        "pkg/data/synthetic/attributes.py": "",
        "pkg/data/fashioniq.py": "import pkg.data.synthetic.attributes\n",
        "pkg/evaluation/__init__.py": "",
        "pkg/evaluation/shopper.py": "def f():\n    from pkg.data.synthetic.pairs import x\n",
        "pkg/serving.py": "from pkg.data import synthetic\nfrom pkg.data import load\n",
        "app.py": "from pkg.data.synthetic import attributes\n",
    })
    bad = synthetic_violations(graph, "pkg.data.synthetic", "pkg.data")
    assert sorted((e.source, e.target) for e in bad) == [
        ("app.py", "pkg.data.synthetic.attributes"), ("pkg.data.fashioniq", "pkg.data.synthetic.attributes"),
        ("pkg.evaluation.shopper", "pkg.data.synthetic.pairs"), ("pkg.serving", "pkg.data.synthetic"),
    ]


# ---- the repository -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_graph()


def test_the_graph_covers_the_packages_and_front_ends_and_not_tests(graph):
    names = set(graph.modules)
    assert {"fashion_retrieval", "fashion_retrieval.search.retriever", "benchmarks.common"} <= names
    assert {"app.py", "streamlit_app/app.py", "hf_space/app.py", "training/train.py"} <= names
    assert not any(n.startswith("tests") for n in names), "tests/ must stay out of the graph"
    assert not any(e.target in graph.leaves for e in graph.edges), "front ends are leaves"
    # Known edges: an absolute one, a relative one, one inside a function.
    assert "fashion_retrieval.evaluation.composed" in graph.targets("fashion_retrieval.evaluation.protocols")
    assert "fashion_retrieval.dashboard.models" in graph.targets("fashion_retrieval.dashboard.ui")
    assert any(e.function for e in graph.edges)


def test_no_import_cycles(graph):
    cycles = find_cycles(graph)
    if cycles:
        _fail(
            f"{len(cycles)} import cycle(s); move what both sides share to a module both import "
            "(an import inside a function still counts):",
            (_format_cycle(c) for c in cycles),
        )


def test_the_ui_packages_import_neither_the_other_ui_nor_training(graph):
    bad = layer_violations(graph)
    if bad:
        _fail(
            f"{len(bad)} import(s) from a UI package ({', '.join(UI_PACKAGES)}) into the other UI "
            f"or into {TRAINING}; put what both need below them (the library or its serving "
            "layer):",
            (str(e) for e in bad),
        )


def test_only_the_synthetic_entry_imports_the_synthetic_catalogue(graph):
    bad = synthetic_violations(graph)
    if bad:
        _fail(
            f"{len(bad)} import(s) of {SYNTHETIC} from outside it and its entry in {DATA_REGISTRY}; ask the "
            "data set entry instead (DATASETS.get(\"synthetic\"): its loader, options and helper()):",
            (str(e) for e in bad),
        )


# ---- docs/ARCHITECTURE.md names real paths ---------------------------------------------------

_SUFFIX = re.compile(r"\.(py|md|json|jsonl|ya?ml|toml|txt|cfg|ini|sh|csv|parquet)$")
_NOT_A_PATH = re.compile(r"[\s<>{}()*=,;|]")


def path_like_tokens(text: str) -> list[str]:
    """Backticked tokens of ``text`` that look like file paths (see the module docstring)."""
    out = []
    for token in re.findall(r"`([^`\n]+)`", text):
        if _NOT_A_PATH.search(token) or token.startswith(("~", "$", "http:", "https:")):
            continue
        if _outside(token) or "/" in token and (token.endswith("/") or _SUFFIX.search(token)):
            out.append(token)
    return out


def _outside(token: str) -> bool:
    """``../x``, ``a/../../x``, ``/two/segments`` or ``C:\\...`` (a lone ``/route`` is no path)."""
    absolute = token.startswith("/") and token.strip("/").count("/") >= 1
    return absolute or token.startswith("../") or "/../" in token or bool(
        re.match(r"^[A-Za-z]:[\\/]", token)
    )


def _exists(token: str, root: Path, tree: list[str]) -> bool:
    if (root / token).exists():
        return True
    tail = "/" + token.rstrip("/")
    return any(p.endswith(tail) for p in tree)


def _repo_paths(root: Path) -> list[str]:
    """Every file and folder of the repository (relative, posix), generated ones excepted."""
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".") or SKIPPED_DIRS.intersection(rel.parts):
            continue
        out.append(rel.as_posix())
    return out


def doc_path_problems(doc: Path, root: Path) -> list[str]:
    """Paths the page names that lie outside the repository or do not exist in it."""
    tree = _repo_paths(root)
    problems = []
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for token in path_like_tokens(line):
            if _outside(token):
                problems.append(f"line {n}: `{token}` is outside the repository")
            elif not _exists(token, root, tree):
                problems.append(f"line {n}: `{token}` does not exist in the repository")
    return problems


def test_the_doc_path_check_tells_paths_from_other_words(tmp_path):
    _write_tree(tmp_path, {"pkg/data/synthetic/pairs.py": "", "docs/x.md": ""})
    doc = tmp_path / "docs" / "x.md"
    doc.write_text(
        "`pkg/data/synthetic/pairs.py` `synthetic/pairs.py` `synthetic/` `pkg/gone.py`\n"
        "`../shared/DESIGN.md` `/work/venv/bin/python` `~/.cache/x` `$HOME/x.json`\n"
        "`python -m pkg.data` `open_clip:ViT-B-32` `hf:<path or repo>` `org/model-name`\n",
        encoding="utf-8",
    )
    assert doc_path_problems(doc, tmp_path) == [
        "line 1: `pkg/gone.py` does not exist in the repository",
        "line 2: `../shared/DESIGN.md` is outside the repository",
        "line 2: `/work/venv/bin/python` is outside the repository",
    ]
    doc.write_text("`/abs/folder/` `pkg/../../x.py` `/search` `a/b` `pkg/data/`\n", encoding="utf-8")
    assert doc_path_problems(doc, tmp_path) == [
        "line 1: `/abs/folder/` is outside the repository",
        "line 1: `pkg/../../x.py` is outside the repository",
    ]


def test_the_architecture_page_names_existing_paths_inside_the_repository():
    problems = doc_path_problems(ARCHITECTURE, ROOT)
    if problems:
        _fail(f"{ARCHITECTURE.relative_to(ROOT)}:", problems)
