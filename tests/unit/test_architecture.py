"""The house's import rules hold (DESIGN §2): import-linter's contracts in pyproject.toml.

Services never import each other; `shared/` imports no service, kubesim, sandbox or CLI;
services import no tool or client; kubesim stands alone; only the CLI's supervisor imports
the sandbox; and deciders import no I/O library themselves and never read the clock.
`make lint` runs the import check; this test makes CI run it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


def test_the_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


_CLOCK_READS = frozenset({"now", "utcnow", "today", "time", "monotonic", "perf_counter"})
_CLOCK_OWNERS = frozenset({"datetime", "date", "time", "loop"})


def _decider_modules() -> list[str]:
    """The deciders named by the import contract: one list, in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["name"].startswith("Deciders import no I/O library")
    ]
    modules: list[str] = contract["source_modules"]
    return modules


def clock_reads(source: str) -> list[str]:
    """`owner.attr(...)` calls in `source` that read a clock, as `line: owner.attr`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        if node.func.attr in _CLOCK_READS and name in _CLOCK_OWNERS:
            found.append(f"{node.lineno}: {name}.{node.func.attr}")
        elif node.func.attr == "utcnow":
            found.append(f"{node.lineno}: {name}.utcnow")
    return found


def test_deciders_never_read_the_clock() -> None:
    """No decider calls datetime.now, utcnow, date.today, time.time or time.monotonic:
    times arrive inside commands, so a decision replays exactly."""
    modules = _decider_modules()
    assert "services.drift.decider" in modules
    offenders = {}
    for module in modules:
        path = ROOT / (module.replace(".", "/") + ".py")
        if reads := clock_reads(path.read_text()):
            offenders[module] = reads
    assert offenders == {}


def test_the_clock_check_sees_every_way_of_reading_the_clock() -> None:
    """The AST check itself catches each clock read it names (so it cannot pass vacuously)."""
    source = (
        "import datetime, time\n"
        "a = datetime.datetime.now()\nb = datetime.date.today()\nc = time.time()\n"
        "d = time.monotonic()\ne = datetime.datetime.utcnow()\nf = now_of(x)\n"
    )
    assert [r.split(": ")[1] for r in clock_reads(source)] == [
        "datetime.now",
        "date.today",
        "time.time",
        "time.monotonic",
        "datetime.utcnow",
    ]


def envelopes_built(source: str) -> list[int]:
    """Lines of `source` that build a `Metadata(...)` with fields: an envelope by hand."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Metadata"
        and (node.keywords or node.args)
    ]


def test_envelopes_come_from_the_one_factory() -> None:
    """Outside `shared/eventlog/envelope.py`, no code fills a `Metadata(...)` itself: the
    trace context and causation rules live in one place."""
    factory = ROOT / "shared" / "eventlog" / "envelope.py"
    offenders = {
        str(path.relative_to(ROOT)): lines
        for package in ("shared", "services")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != factory and (lines := envelopes_built(path.read_text()))
    }
    assert offenders == {}
    assert envelopes_built(factory.read_text())
    assert envelopes_built("m = Metadata(actor='x')\nempty = Metadata()\n") == [1]
