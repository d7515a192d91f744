"""The layers of the package (the house, issue 12): every module imports its own layer or lower, same-layer units
form no cycle, and the bottom layer loads neither torch nor OpenCV.

Read with `ast` from the source, so imports inside functions count as much as those at the top of a file.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.shared import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "hfan"

# Bottom-up. A unit is a top-level module or subpackage of hfan.
LAYERS = {
    0: ("hfan.config", "hfan.files", "hfan.streams", "hfan.presets"),
    1: ("hfan.io",),
    2: ("hfan.preprocess",),
    3: ("hfan.models", "hfan.flow"),
    4: ("hfan.inference",),
    5: ("hfan.datasets", "hfan.segment", "hfan.evaluation", "hfan.info"),
    6: ("hfan.train",),
    7: ("hfan.demo", "hfan.cli"),
}
LAYER_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the project root
    line: int
    importer: str  # dotted module name of the file
    imported: str  # dotted module name (hfan.x.y), or "hfan" for the package's lazy API

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.imported}"


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exempt(path: Path) -> bool:
    return path == PACKAGE / "__init__.py" or path.name == "__main__.py"


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports_of(path: Path, root: Path = PACKAGE) -> list[Import]:
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    relative_file = str(path.relative_to(root.parents[1]))
    found = []

    def add(node: ast.AST, target: str) -> None:
        if target == "hfan" or target.startswith("hfan."):
            found.append(Import(relative_file, node.lineno, module, target))

    for node in ast.walk(tree):  # every statement, including those inside functions and `if TYPE_CHECKING:`
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name != "hfan":  # the package itself: what the file reads from it is checked below
                    add(node, alias.name)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hfan"
              and node.attr != "__version__" and f"hfan.{node.attr}" not in LAYER_OF):
            add(node, "hfan")  # hfan.<name> of the lazy API (hfan.<unit> comes with its own `import hfan.<unit>`)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this file's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "hfan":  # `from hfan import x`: the submodule x, or a name of the lazy API
                for alias in node.names:
                    unit = f"hfan.{alias.name}"
                    add(node, unit if unit in LAYER_OF else "hfan")
            else:
                add(node, source)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node, node.args[0].value)
    return found


def _all_imports() -> list[Import]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if not _exempt(p))
    assert len(files) > 30, f"only {len(files)} modules under {PACKAGE}"
    return [item for path in files for item in _imports_of(path)]


def test_every_module_belongs_to_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py") if not _exempt(p)}
    unknown = sorted(units - set(LAYER_OF))
    assert not unknown, f"units without a layer (add them to LAYERS in {Path(__file__).name}): {unknown}"


def _upward(imports: list[Import]) -> list[str]:
    problems = []
    for item in imports:
        if item.imported == "hfan":
            problems.append(f"{item.where} (the lazy API: import from the module that defines the name)")
            continue
        source, target = _unit(item.importer), _unit(item.imported)
        if target not in LAYER_OF:
            problems.append(f"{item.where}: {target} is in no layer")
        elif LAYER_OF[target] > LAYER_OF[source]:
            problems.append(f"{item.where}: layer {LAYER_OF[source]} ({source}) imports layer "
                            f"{LAYER_OF[target]} ({target})")
    return problems


def _cycles(imports: list[Import]) -> list[str]:
    """Cycles of the unit graph, each with the import that makes every step."""
    edges: dict[str, dict[str, list[Import]]] = {}
    for item in imports:
        source, target = _unit(item.importer), _unit(item.imported)
        if item.imported != "hfan" and source != target:
            edges.setdefault(source, {}).setdefault(target, []).append(item)

    def path_back(start: str, current: str, seen: list[str]) -> list[str] | None:
        """A path of units from `current` back to `start`, depth first."""
        for target in sorted(edges.get(current, {})):
            if target == start:
                return seen + [target]
            if target not in seen:
                found = path_back(start, target, seen + [target])
                if found:
                    return found
        return None

    cycles = []
    for unit in sorted(edges):
        cycle = path_back(unit, unit, [unit])
        if cycle and min(cycle) == unit:  # each cycle once, from its first unit
            steps = [edges[a][b][0].where for a, b in zip(cycle, cycle[1:])]
            cycles.append(" -> ".join(cycle) + "\n    " + "\n    ".join(steps))
    return cycles


def test_no_module_imports_a_higher_layer_or_the_lazy_api():
    problems = _upward(_all_imports())
    assert not problems, "upward imports:\n  " + "\n  ".join(problems)


def test_units_of_one_layer_form_no_cycle():
    cycles = _cycles(_all_imports())
    assert not cycles, "import cycles between units:\n  " + "\n  ".join(cycles)


def test_the_checks_name_file_line_and_module():
    imports = [Import("src/hfan/io/video.py", 12, "hfan.io.video", "hfan.models.mit"),
               Import("src/hfan/datasets/davis.py", 3, "hfan.datasets.davis", "hfan.evaluation.frames"),
               Import("src/hfan/evaluation/frames.py", 40, "hfan.evaluation.frames", "hfan.datasets.davis"),
               Import("src/hfan/models/mit.py", 5, "hfan.models.mit", "hfan.flow.encoding"),
               Import("src/hfan/segment.py", 7, "hfan.segment", "hfan.datasets.layouts")]
    assert _upward(imports) == ["src/hfan/io/video.py:12: hfan.io.video imports hfan.models.mit: "
                                "layer 1 (hfan.io) imports layer 3 (hfan.models)"]
    [cycle] = _cycles(imports)
    assert cycle.startswith("hfan.datasets -> hfan.evaluation -> hfan.datasets")
    assert "src/hfan/datasets/davis.py:3: hfan.datasets.davis imports hfan.evaluation.frames" in cycle
    assert "src/hfan/evaluation/frames.py:40: hfan.evaluation.frames imports hfan.datasets.davis" in cycle


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """Function-level, relative, `from hfan import`, `import hfan.x` and import_module("hfan.x"), with lines."""
    package = tmp_path / "src" / "hfan"
    (package / "models").mkdir(parents=True)
    (package / "models" / "fake.py").write_text(
        "import os\n"
        "from hfan.config import ModelConfig\n"
        "from .mit import build_mit\n"
        "from . import decoder\n"
        "from .. import files\n"
        "def late():\n"
        "    import hfan.train.loop\n"
        "    from hfan import load_model\n"
        "    import hfan\n"
        "    return importlib.import_module('hfan.cli'), hfan.__version__, hfan.Predictor\n")
    found = [(i.line, i.imported) for i in _imports_of(package / "models" / "fake.py", package)]
    assert sorted(found) == [(2, "hfan.config"), (3, "hfan.models.mit"), (4, "hfan.models"), (5, "hfan.files"),
                             (7, "hfan.train.loop"), (8, "hfan"), (10, "hfan"), (10, "hfan.cli")]
    item = _imports_of(package / "models" / "fake.py", package)[0]
    assert item.where.startswith("src/hfan/models/fake.py:") and "hfan.models.fake imports" in item.where


def _fresh_interpreter(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"),
                                                                    os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("statement", ["import hfan.config, hfan.presets, hfan.files, sys", "import hfan, sys"])
def test_the_bottom_layer_and_the_lazy_api_load_neither_torch_nor_opencv(statement):
    heavy = _fresh_interpreter(f"{statement}\nprint(sorted({{'torch', 'cv2'}} & set(sys.modules)))")
    assert heavy == "[]", f"`{statement}` loaded {heavy}"


def test_the_lazy_api_still_gives_every_name():
    names = _fresh_interpreter("import hfan\nprint(' '.join(n for n in hfan.__all__ if n != '__version__' "
                               "and getattr(hfan, n) is not None))")
    assert set(names.split()) >= {"load_model", "build_model", "Predictor", "segment_video", "get_preset",
                                  "list_presets", "ModelConfig", "evaluate_davis"}
