"""docs/internals.md's module map stays true: it lists every module of the package, and no
module imports from a layer above its own or takes part in an import cycle; nor does any module
of the probe (`probes/`), with the package or among its own."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from advisor import REPO_ROOT

PACKAGE = REPO_ROOT / "advisor"
ROW = re.compile(r"^\| `(advisor[\w.]*)` \| (\d+) \| .+ \|$")


def module_map() -> dict[str, int]:
    text = (REPO_ROOT / "docs" / "internals.md").read_text()
    table = text.split("<!-- module-map -->")[1].split("<!-- /module-map -->")[0]
    return {m.group(1): int(m.group(2)) for line in table.splitlines()
            if (m := ROW.match(line.strip()))}


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """Package modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in known} or ({node.module} & known)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & known
    return found


def test_the_map_lists_every_module_and_nothing_else():
    assert set(module_map()) == set(modules())


def test_no_module_imports_from_a_layer_above_it():
    layer, found = module_map(), modules()
    upward = [f"{name} (layer {layer[name]}) imports {dep} (layer {layer[dep]})"
              for name, path in found.items() for dep in imports(path, set(found))
              if dep != "advisor" and layer[dep] > layer[name]]
    assert not upward


@pytest.mark.parametrize("tree", [("advisor",), ("advisor", "probes")])
def test_no_import_cycle(tree):
    found = {name: path for package in tree for name, path in modules(REPO_ROOT / package).items()}
    graph = {name: imports(path, set(found)) - {name, "advisor", "probes"}
             for name, path in found.items()}
    done, stack = set(), []

    def visit(name):
        if name in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(name):] + [name]))
        if name in done:
            return
        stack.append(name)
        for dep in graph[name]:
            visit(dep)
        stack.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_the_tests_run_with_a_private_home_and_model_cache(private_home, request,
                                                         tmp_path_factory):
    from pathlib import Path

    from advisor.cache import default_cache_dir
    from tests.conftest import run_folder

    assert Path.home() == private_home
    run = run_folder(request.config, tmp_path_factory)  # new for this run; xdist: shared
    assert default_cache_dir() == run / "model-cache"
    assert private_home.is_relative_to(run) and tmp_path_factory.getbasetemp().is_relative_to(run)
