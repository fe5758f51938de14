"""The shape of the code: no import cycles among ondevice's modules (converters/ included, which installs
as ondevice.converters), function-level imports included (a lazy import only hides a ring)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def source_roots() -> dict[str, Path]:
    """Each source directory and the package it installs as: ondevice/, and pyproject's package-dir."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return {"ondevice": ROOT / "ondevice"} | {
        package: ROOT / directory for package, directory in setuptools.get("package-dir", {}).items()
    }


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [*package.split("."), *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    skipped: set[int] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for target in targets:
            # Importing a.b.c runs a and a.b first: each is a dependency too, unless it is a package this
            # module is itself inside (that one is already being imported).
            parts = target.split(".")
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts))} - own_packages
            found |= (prefixes | {target}) & known
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {
        _module_name(package, root, path): path
        for package, root in source_roots().items()
        for path in root.rglob("*.py")
    }
    known = set(files)
    return {module: _imports(path, module, known) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_ring():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_converters_are_imported_by_their_installed_name():
    assert source_roots()["ondevice.converters"] == ROOT / "converters"
    graph = import_graph()
    assert "ondevice.converters.dequantize" in graph["ondevice.converters.hf_to_gguf.convert"]
    bare = []
    for directory in ("ondevice", "converters", "tests", "benchmarks"):
        for path in (ROOT / directory).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                bare += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "converters"]
    assert bare == []  # no top-level `converters` is installed


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_tests_import_helpers_from_support_never_from_other_tests():
    """Helpers live in tests/support (or conftest's fixtures); a test module importing another one (or
    conftest) would run that module's tests' imports and hide where a helper belongs."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                last = name.rpartition(".")[2]
                if last == "conftest" or last.startswith("test_"):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_tests_mirror_the_packages():
    """tests/ mirrors the code: a folder per package (tests/runtime/ for ondevice/runtime/, …,
    tests/converters/ for the converters), each package has one, and helpers sit in tests/support/."""
    code = {p.name for p in (ROOT / "ondevice").iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"support"} == code | {"converters"}
