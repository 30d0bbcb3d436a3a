"""One exception tree (`shared.errors`): every error class Slipway defines derives from
`SlipwayError`, has one name, and is drawn in the tree of `shared.errors`' docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import shared.errors
from shared.errors import SlipwayError

PACKAGES = ("shared", "services", "slipway_cli", "slipway_sandbox")
"""Every package of Slipway's; kubesim, a product of its own, keeps its own tree."""


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined (not just imported) in a module of `PACKAGES`."""
    found: list[type[BaseException]] = []
    for root in PACKAGES:
        package = importlib.import_module(root)
        names = [root] + [m.name for m in pkgutil.walk_packages(package.__path__, f"{root}.")]
        for name in names:
            if name.endswith("__main__"):
                continue  # running it starts a service
            module = importlib.import_module(name)
            found.extend(
                cls
                for _, cls in inspect.getmembers(module, inspect.isclass)
                if cls.__module__ == name and issubclass(cls, BaseException)
            )
    return found


def test_every_error_class_derives_from_the_root() -> None:
    """A `raise` anywhere in Slipway can be told from a bug by `except SlipwayError`."""
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _error_classes()
        if not issubclass(cls, SlipwayError)
    ]
    assert not outside, f"derive these from a class of shared.errors: {outside}"


def test_no_two_error_classes_share_a_name() -> None:
    """One name, one meaning: no second `GitError`, `ApiError`, `Invalid` or `NotFound`."""
    homes: defaultdict[str, set[str]] = defaultdict(set)
    for cls in _error_classes():
        homes[cls.__name__].add(cls.__module__)
    assert {name: mods for name, mods in homes.items() if len(mods) > 1} == {}


def test_the_tree_docstring_names_every_error_class() -> None:
    """The tree drawn in shared/errors.py is the whole tree, not a sketch of it."""
    drawn = shared.errors.__doc__ or ""
    missing = sorted({c.__name__ for c in _error_classes()} - set(drawn.replace("…", " ").split()))
    assert not missing, f"draw these in shared/errors.py's docstring: {missing}"
