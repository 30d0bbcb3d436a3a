"""The one base of every configuration Struct: the Structs are the schema."""

from __future__ import annotations

import msgspec


class Spec(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Immutable, camelCase on the wire like PipeCD, and an unknown field is an error."""
