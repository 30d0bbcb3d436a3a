"""A projection that owns one table, named after the projection itself.

Naming the table after the projection is what lets a second instance under
another name (a comparison copy in tests, a scratch replay) get a table of
its own instead of writing into the live one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from shared.projections.base import Projection
from shared.projections.tables import quote

__all__ = ["SingleTableProjection"]


class SingleTableProjection(Projection):
    """Subclasses set `name` (the default name) and `ddl`, and write SQL with `sql()`."""

    ddl: ClassVar[str]
    """The table's DDL, with `{table}` for its physical name."""

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.tables = {self.name: self.ddl}

    def sql(self, template: str, tables: Mapping[str, str]) -> str:
        """`template` with `{table}` replaced by the quoted physical table being written."""
        return template.replace("{table}", quote(tables[self.name]))
