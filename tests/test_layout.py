"""The package's layers import only downwards, and pyproject declares every import each layer makes."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gradcam_tutorial"
LAYERS = {"core": 0, "evaluation": 1, "publishing": 1}  # same rank: neither may import the other


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "core"


def imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """Absolute module names imported by ``path`` (relative imports resolved), with their level."""
    package = ["gradcam_tutorial", *path.relative_to(PACKAGE).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None:  # "from . import a, b": each name is a module
                found += [(f"{module}.{alias.name}", node.level) for alias in node.names]
            else:
                found.append((module, node.level))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def own_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "gradcam_tutorial":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ("evaluation", "publishing") else "core"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downwards_only(path):
    mine = layer_of(path)
    for module, _ in imports(path):
        theirs = own_layer(module)
        if theirs is None or theirs == mine:
            continue
        assert LAYERS[theirs] < LAYERS[mine], f"{path.name} ({mine}) imports {module} ({theirs})"


def test_layer_check_can_fail():
    """The checker resolves relative imports, so a core module reaching up is seen either way."""
    source = "from .evaluation import stats\nfrom . import publishing\nfrom .cam import GradCAM\n"
    found = imports(PACKAGE / "explain.py", source)
    assert [own_layer(m) for m, _ in found] == ["evaluation", "publishing", "core"]
    assert imports(PACKAGE / "evaluation" / "report.py", "from ..cam import GradCAM\n") == [("gradcam_tutorial.cam", 2)]


def declared() -> dict[str, set[str]]:
    """Distribution names (normalised) declared for each layer: core dependencies plus the extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    core = names(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    return {"core": core, **{layer: core | names(extras.get(layer, [])) for layer in ("evaluation", "publishing")}}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_pyproject_declares_every_third_party_import(layer):
    distributions = importlib.metadata.packages_distributions()
    allowed = declared()[layer]
    missing = set()
    for path in SOURCES:
        if layer_of(path) != layer:
            continue
        for module, level in imports(path):
            top = module.split(".")[0]
            if level or top == "gradcam_tutorial" or top in sys.stdlib_module_names:
                continue
            provided = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
            if not provided & allowed:
                missing.add(f"{path.relative_to(PACKAGE)}: {top} ({', '.join(sorted(provided))})")
    assert not missing, sorted(missing)
