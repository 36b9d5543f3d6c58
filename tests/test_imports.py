"""The import pyramid: each module of ``chiptuner`` imports only its own floor and the floors below.

The modules are read with ``ast``, never imported, so the test is quick and sees every import:
at the top of a module, inside a function, under ``if TYPE_CHECKING`` or in a ``try``. An import
inside a function is still a dependency (it is how circles get dodged), so it counts the same.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "chiptuner"

#: The floors, lowest first. A module may import from its own floor and any floor below it.
FLOORS = {
    1: "kernels (numba functions on arrays)",
    2: "base (errors, frozen containers)",
    3: "stages (the library: a typed wrapper per kernel module, the model, metrics)",
    4: "services (the public API, corpus conversion, arranging files, the realtime engine)",
    5: "front ends (ports, audio, the cluster, the browser, training, evaluation)",
    6: "command lines",
}

#: Every module's floor. ``chiptuner._kernels`` covers the modules under it; any other new
#: module must be given its floor here (the test says so).
LAYERS = {
    "chiptuner._kernels": 1,
    "chiptuner.errors": 2,
    "chiptuner.types": 2,
    "chiptuner.timebase": 3,
    "chiptuner.midi_io": 3,
    "chiptuner.roll": 3,
    "chiptuner.rhythm": 3,
    "chiptuner.melody": 3,
    "chiptuner.voices": 3,
    "chiptuner.keys": 3,
    "chiptuner.scales": 3,
    "chiptuner.metrics": 3,
    "chiptuner.options": 3,
    "chiptuner.synth": 3,
    "chiptuner.chip_midi": 3,
    "chiptuner.chip_model": 3,
    "chiptuner.nsf": 3,
    "chiptuner.famitracker": 3,
    "chiptuner.model": 3,  # arranger, baselines, calibration
    "chiptuner": 4,  # the package itself: re-exports read_midi, the types and the errors
    "chiptuner.pipeline": 4,
    "chiptuner.arrange": 4,
    "chiptuner.chip_files": 4,
    "chiptuner.corpus": 4,  # convert, dataset
    "chiptuner.corpus.cluster": 5,
    "chiptuner.live": 5,  # ports, jack_midi, audio, web
    "chiptuner.live.engine": 4,
    "chiptuner.live.session": 4,
    "chiptuner.evaluate": 5,
    "chiptuner.train": 5,
    "chiptuner.cli": 6,
    "chiptuner.live.command": 6,  # imports cli's logging set-up: the same floor
    "chiptuner.live.__main__": 6,
    "chiptuner.__main__": 6,
}

#: Upward imports that exist today, each with the reason it is tolerated. The test fails when one
#: of them disappears, so the list only ever shrinks.
UPWARD_ALLOWED = {
    # convert_corpus(scheduler=...) hands the run to cluster, which is built from convert's
    # worker pool and books (_Books, _Worker, _worker_main): a circle dodged by an import
    # inside convert_corpus. Undoing it means convert taking the cluster back end as an
    # argument (cli choosing it), or the shared pieces moving to a module both import.
    ("chiptuner.corpus.convert", "chiptuner.corpus.cluster"),
}

#: What the kernels may import besides each other: numba functions on numpy arrays.
KERNEL_IMPORTS = {"numba", "numpy", "math"}

#: Where torch may be imported: the training package, and functions named here as
#: ``(module, function)`` (none today). Inference runs on exported .npz weights with numba.
TORCH_PACKAGE = "chiptuner.train"
TORCH_FUNCTIONS: set[tuple[str, str]] = set()

#: Imported only inside functions (each costs hundreds of ms at import time).
LAZY_ONLY = {"sklearn"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the module that it names."""

    path: str  # the importing file, e.g. chiptuner/live/engine.py
    module: str  # the importing module, e.g. chiptuner.live.engine
    target: str  # the imported module, e.g. chiptuner.model.arranger or numpy.linalg
    line: int
    function: str | None  # the innermost enclosing function, None at module level

    def where(self) -> str:
        return f"{self.path}:{self.line}" + (f" (in {self.function})" if self.function else "")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_submodule(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    # `from chiptuner import cli` imports the module chiptuner.cli; `from chiptuner import
    # read_midi` imports a name from the package itself.
    return [f"{base}.{alias.name}" if _is_submodule(f"{base}.{alias.name}") else base for alias in node.names]


def _imports(path: Path) -> list[Import]:
    module = _module_name(path)
    where = str(path.relative_to(PACKAGE.parent))
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                if isinstance(child, ast.ImportFrom) and child.module == "__future__":
                    continue
                for target in _targets(module, path.name == "__init__.py", child):
                    found.append(Import(where, module, target, child.lineno, function))
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), None)
    return found


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = [found for path in MODULES.values() for found in _imports(path)]


def floor_module(module: str) -> str | None:
    """The entry of LAYERS that gives ``module`` its floor: its own, else its nearest package's (not the top's)."""
    name = module
    while name not in LAYERS or (name == "chiptuner" and module != "chiptuner"):
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def floor_of(module: str) -> int | None:
    """The floor of ``module``; None where LAYERS does not give it one."""
    entry = floor_module(module)
    return None if entry is None else LAYERS[entry]


def _describe(floor: int) -> str:
    return f"floor {floor}, {FLOORS[floor]}"


def upward_imports() -> list[tuple[Import, int, int]]:
    """Every import of a higher floor: (the import, the importer's floor, the target's floor)."""
    upward = []
    for found in IMPORTS:
        if found.target != "chiptuner" and not found.target.startswith("chiptuner."):
            continue
        here, there = floor_of(found.module), floor_of(found.target)
        if here is not None and there is not None and there > here:
            upward.append((found, here, there))
    return upward


def test_the_walk_sees_the_package():
    # A walk that found nothing would pass every rule below.
    assert {"chiptuner", "chiptuner.cli", "chiptuner._kernels.arranger", "chiptuner.live.engine"} <= set(MODULES)
    assert any(f.module == "chiptuner.live.engine" and f.target == "chiptuner.model.arranger" for f in IMPORTS)
    assert any(f.module == "chiptuner.cli" and f.target.startswith("chiptuner.live") and f.function for f in IMPORTS)


def test_every_module_has_a_floor():
    missing = [module for module in MODULES if floor_of(module) is None]
    assert missing == [], f"give these modules a floor in LAYERS of tests/test_imports.py: {missing}"
    stale = [module for module in LAYERS if module not in MODULES]
    assert stale == [], f"LAYERS names modules that are gone: {stale}"


def test_nothing_imports_a_higher_floor():
    offending = [
        f"{found.where()} imports {found.target}: {found.module} is on {_describe(here)}, "
        f"{found.target} on {_describe(there)}"
        for found, here, there in upward_imports()
        if (found.module, floor_module(found.target)) not in UPWARD_ALLOWED
    ]
    assert offending == [], "a module imports from a higher floor:\n" + "\n".join(offending)


def test_the_tolerated_upward_imports_still_exist():
    present = {(found.module, floor_module(found.target)) for found, _, _ in upward_imports()}
    gone = sorted(UPWARD_ALLOWED - present)
    assert gone == [], f"remove these from UPWARD_ALLOWED in tests/test_imports.py, they are fixed: {gone}"


def test_the_kernels_import_only_numba_numpy_math_and_each_other():
    offending = [
        f"{found.where()} imports {found.target}"
        for found in IMPORTS
        if found.module.startswith("chiptuner._kernels")
        and not found.target.startswith("chiptuner._kernels")
        and found.target.split(".")[0] not in KERNEL_IMPORTS
    ]
    assert offending == [], "a kernel module imports outside numba, numpy, math and chiptuner._kernels:\n" + "\n".join(
        offending
    )


def test_torch_is_imported_only_for_training():
    offending = [
        found.where()
        for found in IMPORTS
        if found.target.split(".")[0] == "torch"
        and not (found.module == TORCH_PACKAGE or found.module.startswith(TORCH_PACKAGE + "."))
        and (found.module, found.function) not in TORCH_FUNCTIONS
    ]
    assert offending == [], "torch imported outside chiptuner/train/ (inference runs on numba):\n" + "\n".join(
        offending
    )


@pytest.mark.parametrize("package", sorted(LAZY_ONLY))
def test_heavy_packages_are_imported_inside_functions(package):
    offending = [found.where() for found in IMPORTS if found.target.split(".")[0] == package and found.function is None]
    assert offending == [], f"{package} imported at module level (import it inside the function using it):\n" + (
        "\n".join(offending)
    )
