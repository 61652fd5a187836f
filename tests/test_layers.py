"""The layering contract: a lower layer never imports a higher one, not even inside a function.

Every ``import ichscan.X`` / ``from ichscan.X import …`` anywhere in a module (top level, function
bodies, ``TYPE_CHECKING`` blocks) is read with `ast`, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ichscan

PACKAGE = Path(ichscan.__file__).parent

# The data's path (docs/ARCHITECTURE.md). Same rank: may import each other (config is the typed
# configuration of training). metrics.py holds pure metric functions (numpy, labels), used from
# training's validation up to evaluate, so it sits with the foundations.
LAYERS: dict[str, int] = {
    "ichscan": 0, "labels": 0, "files": 0, "metrics": 0, "parallel": 0, "dask_worker": 0,
    "dicom": 1, "nifti": 1, "phantom": 1,
    "prepare": 2,
    "data": 3,
    "models": 4,
    "config": 5, "train": 5,
    "predict": 6,
    "evaluate": 7, "export": 7, "onnx": 7,
    "explain": 8,
    "serve": 9,
    "cli": 10, "__main__": 10,
}


def layer_of(module: str) -> str:
    """``ichscan.train.run`` → ``train``; ``ichscan`` → ``ichscan``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ichscan import in a source file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name == "ichscan" or name.startswith("ichscan.")]
    return found


def test_every_package_has_a_layer() -> None:
    packages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"}
    missing = sorted(packages - set(LAYERS))
    assert not missing, f"give {missing} a rank in LAYERS (tests/test_layers.py) and docs/ARCHITECTURE.md"


def test_no_lower_layer_imports_a_higher_one() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        parts = relative.with_suffix("").parts
        own = layer_of(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for line, module in imported_modules(path):
            target = layer_of(module)
            if LAYERS.get(target, 99) > LAYERS.get(own, -1):
                violations.append(f"{relative}:{line}: {own} imports {module}")
    assert not violations, "lower layer imports a higher one:\n" + "\n".join(violations)


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ichscan.explain.run import explain_slices\n    import ichscan.serve\n")
    assert imported_modules(source) == [(2, "ichscan.explain.run"), (3, "ichscan.serve")]
