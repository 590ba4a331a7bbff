"""The layer rules of docs/architecture.md, enforced by import-linter as CI does."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> list[str]:
    script = Path(sys.executable).with_name("lint-imports")
    if script.exists():
        return [str(script)]
    run = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return [sys.executable, "-c", run]


def test_the_import_layers_hold() -> None:
    result = subprocess.run(
        [*_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # Every contract in pyproject.toml was checked, not silently skipped.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 5
    for contract in contracts:
        assert contract["name"].split()[0] in report
    assert f"Contracts: {len(contracts)} kept, 0 broken." in report, report


def _import_graph() -> dict[str, set[str]]:
    """Every module's imports, with the packages an import runs on the way: importing
    ``a.b.c`` first runs ``a/__init__`` and ``a/b/__init__`` (unless the importer lives in
    them), which is how two modules that never name each other still import in a circle."""
    import grimp

    graph = grimp.build_graph(*ROOT_PACKAGES, cache_dir=None)
    modules = set(graph.modules)
    edges: dict[str, set[str]] = {}
    for module in modules:
        out: set[str] = set()
        for target in graph.find_modules_directly_imported_by(module):
            out.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):
                package = ".".join(parts[:i])
                if module != package and not module.startswith(package + "."):
                    out.add(package)
        edges[module] = out & modules
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
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
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


ROOT_PACKAGES = ("bot", "handlers", "domain", "telemetry", "jobs")


def test_the_cycle_finder_finds_a_circle_through_a_package() -> None:
    # pages -> api.context runs api/__init__, which imports picker, which imports pages.
    edges = {
        "h.pages": {"h.api.context", "h.api"},
        "h.api": {"h.api.picker", "h.api.context"},
        "h.api.context": set(),
        "h.api.picker": {"h.pages"},
        "h.alone": {"h.pages"},
    }
    assert _cycles(edges) == [["h.api", "h.api.picker", "h.pages"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_in_a_circle() -> None:
    assert _cycles(_import_graph()) == []


def test_every_folder_and_package_says_what_lives_there() -> None:
    import ast
    import subprocess as sp

    tracked = sp.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout: walk the tree instead
        tracked = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    silent = []
    for init in sorted({t for t in tracked if t.endswith("__init__.py")}):
        doc = ast.get_docstring(ast.parse((ROOT / init).read_text(encoding="utf-8")))
        if not doc or not doc.strip():
            silent.append(init)
    tops = {t.split("/")[0] for t in tracked if "/" in t}
    for top in sorted(tops):
        if not (ROOT / top / "__init__.py").exists() and not (ROOT / top / "README.md").exists():
            silent.append(f"{top}/ (no README.md)")
    assert silent == []


def test_ci_runs_exactly_the_readme_test_command() -> None:
    # "Two commands": CI's first leg is the README's test command, verbatim.
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    command = next(
        line.strip() for line in readme.splitlines()
        if line.startswith("python3 -m venv") and "pytest" in line
    )
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert command + " \\" in ci
