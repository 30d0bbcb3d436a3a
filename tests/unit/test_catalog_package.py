"""The event catalog's package (`shared/events/catalog/`): its `__init__` is the one public face.

An event written in a family module but not imported into the package, or not
listed in `ALL_EVENTS`, would decode nowhere and be missing from the AsyncAPI
document; a Struct left out of `__all__` would be importable only from its
family module. These checks walk the family modules, so a new one is covered
without an edit here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import msgspec

import shared.events.catalog as catalog
from shared.events.base import Event


def _family_structs() -> dict[str, type[msgspec.Struct]]:
    found: dict[str, type[msgspec.Struct]] = {}
    for info in pkgutil.iter_modules(catalog.__path__):
        module = importlib.import_module(f"{catalog.__name__}.{info.name}")
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, msgspec.Struct)
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


def test_every_event_of_a_family_module_is_registered() -> None:
    events = {v for v in _family_structs().values() if issubclass(v, Event)}
    assert events, "no family module found"
    assert events - set(catalog.ALL_EVENTS) == set()
    assert set(catalog.ALL_EVENTS) - events == set()
    assert len(catalog.ALL_EVENTS) == len(set(catalog.ALL_EVENTS))


def test_every_struct_of_a_family_module_is_the_packages() -> None:
    for name, struct in _family_structs().items():
        assert name in catalog.__all__, name
        assert getattr(catalog, name) is struct, name
