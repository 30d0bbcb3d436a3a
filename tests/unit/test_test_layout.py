"""The tests' own house rules (tests/README.md): every test module sits in a layer folder,
and no test module imports another one (what tests share lives in tests/support/)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import LAYERS
from tests.support.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests"


def _test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, absolute or relative, with the line it does it on."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.append((node.lineno, "." * node.level + base))
            # `from tests.unit import test_x` names the module in the imported names.
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def test_no_test_module_imports_another() -> None:
    """Importing a test module runs its module-level code and re-collects its fixtures."""
    offences = [
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}"
        for path in TESTS.rglob("*.py")
        for line, module in _imported_modules(path)
        if any(part.startswith("test_") for part in module.split("."))
    ]
    assert not offences, "move what they share into tests/support/:\n" + "\n".join(offences)


def test_every_test_module_is_in_a_layer_folder() -> None:
    """A test's folder says what it needs (tests/README.md); tests/ itself holds none."""
    misplaced = [
        str(path.relative_to(REPO_ROOT))
        for path in _test_modules()
        if path.relative_to(TESTS).parts[0] not in LAYERS
    ]
    assert not misplaced, f"put each in one of tests/{{{','.join(LAYERS)}}}/: {misplaced}"
