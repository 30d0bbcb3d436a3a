"""The `discovered_configs` read model: application config files the gitwatcher found in a
watched repository, and which application (if any) is registered at each.

PipeCD's "unregistered applications": a config is unregistered while it was discovered
(`ApplicationConfigDiscovered`, stream `repository-<id>`), not removed from the repository
since (`ApplicationConfigRemoved`), and no application is registered at its repository,
directory and file. An `ApplicationRegistered` there takes it off that list, the
application's `ApplicationDeleted` (or a registration moving it elsewhere) puts it back
(unless the file was removed meanwhile). A registration is kept even for a config not
discovered yet: the gitwatcher reads registrations from the `applications` view, which
lags the log, so it may announce a config just after somebody registered it.

Everything in a discovery came from a repository. A directory that would leave the
repository (`..`, an absolute path) or a file that is not an application config's name is
never recorded, and labels pass the label rule (`shared.labels`) as the observed config
labels do. Names are kept as the config wrote them (clipped): registering checks them.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from typing import Final

import asyncpg
import msgspec

from shared.config.discovery import is_application_config_name
from shared.events.base import RecordedEvent
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    ApplicationConfigRemoved,
    ApplicationDeleted,
    ApplicationRegistered,
)
from shared.labels import usable_labels
from shared.projections.single_table import SingleTableProjection
from shared.redaction import clip
from shared.triggers import normalize_dir

__all__ = ["DiscoveredConfigsProjection", "config_id", "repository_dir"]

_DDL = """
CREATE TABLE {table} (
  config_id            text        PRIMARY KEY,
  repository_id        text        NOT NULL,
  path                 text        NOT NULL,
  config_filename      text        NOT NULL,
  name                 text        NOT NULL DEFAULT '',
  kind                 text        NOT NULL DEFAULT '',
  labels               jsonb       NOT NULL DEFAULT '{}',
  commit_hash          text        NOT NULL DEFAULT '',
  discovered_at        timestamptz,
  discovered_position  bigint,
  registered_by        text
);
CREATE INDEX ON {table} (discovered_position) WHERE registered_by IS NULL;
CREATE UNIQUE INDEX ON {table} (registered_by)
"""
"""`path` is the directory ("" for the root); `discovered_at` and `discovered_position`
are NULL for a config only a registration names; `registered_by` is the application
registered at it, NULL when none is (the config is unregistered). An application is
registered at one config at most (`_RELEASE` lets go of the others before `_REGISTERED`),
hence the UNIQUE index; and being unique, a replay builds it before filling the table
(tables.py defers only plain indexes), which each registration's release looks its
application up by: without it a replay scanned the table once per registration
(quadratic: 66,000 events/s over a million events with 10,000 registrations)."""

# A second discovery (never two of one file from one stream, but replicas of a deleted
# config's rediscovery may come) refreshes what the config says, not who registered it.
_DISCOVERED = """
INSERT INTO {table} (config_id, repository_id, path, config_filename, name, kind, labels,
                     commit_hash, discovered_at, discovered_position)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
ON CONFLICT (config_id) DO UPDATE
  SET name = excluded.name, kind = excluded.kind, labels = excluded.labels,
      commit_hash = excluded.commit_hash, discovered_at = excluded.discovered_at,
      discovered_position = excluded.discovered_position
"""

# The application lets go of every config but `$2` ("" for none: a deletion): a config
# that was discovered is unregistered again, one only the registration named goes. The
# two statements touch disjoint rows (discovered or not), as PostgreSQL requires of a
# data-modifying WITH and its main statement.
_RELEASE = """
WITH forgotten AS (
  DELETE FROM {table}
  WHERE registered_by = $1 AND config_id <> $2 AND discovered_position IS NULL
)
UPDATE {table} SET registered_by = NULL
WHERE registered_by = $1 AND config_id <> $2 AND discovered_position IS NOT NULL
"""

# The file left the repository: off the list, and a registration's row forgets it was
# found (its application's deletion must not list a file that is gone).
_REMOVED = """
WITH forgotten AS (
  DELETE FROM {table} WHERE config_id = $1 AND registered_by IS NULL
)
UPDATE {table}
SET name = '', kind = '', labels = '{}', commit_hash = '', discovered_at = NULL,
    discovered_position = NULL
WHERE config_id = $1 AND registered_by IS NOT NULL
"""

_REGISTERED = """
INSERT INTO {table} (config_id, repository_id, path, config_filename, registered_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (config_id) DO UPDATE SET registered_by = excluded.registered_by
"""

_json: Final = msgspec.json.Encoder()
_NAME_CHARS: Final = 253
"""A config's name or kind as listed: an application name is 63 at most, so anything
longer is refused when registering anyway; a repository's megabyte of name is not shown."""


def repository_dir(path: str) -> str | None:
    """`path` as a directory relative to its repository's root ("" for the root itself), or
    None when it is no such directory: absolute, above the root, or holding NUL or a line
    break."""
    if any(c in path for c in "\0\r\n") or path.startswith("/"):
        return None
    directory = normalize_dir(path)
    if directory == ".." or directory.startswith("../"):
        return None
    return directory


def config_id(repository_id: str, directory: str, config_filename: str) -> str:
    """A config file's id in the list (32 hex digits): a digest of its repository, its
    directory (as `repository_dir` gives it) and its file name."""
    key = "\0".join((repository_id, directory, config_filename))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class DiscoveredConfigsProjection(SingleTableProjection):
    """Config files discovered in watched repositories, and who is registered at each."""

    name = "discovered_configs"
    ddl = _DDL
    version = 2  # 2: the index on registered_by is UNIQUE
    event_types = (
        ApplicationConfigDiscovered,
        ApplicationConfigRemoved,
        ApplicationRegistered,
        ApplicationDeleted,
    )

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Update the table for one event (the others change nothing)."""
        match event.event:
            case ApplicationConfigDiscovered() as found:
                directory = repository_dir(found.path)
                filename = found.config_filename
                if (
                    directory is None
                    or posixpath.basename(filename) != filename
                    or not is_application_config_name(filename)
                ):
                    return
                labels, _ = usable_labels(found.labels)
                await conn.execute(
                    self.sql(_DISCOVERED, tables),
                    config_id(found.repository_id, directory, found.config_filename),
                    found.repository_id,
                    directory,
                    found.config_filename,
                    clip(found.name, _NAME_CHARS),
                    clip(found.kind, _NAME_CHARS),
                    _json.encode(dict(labels)).decode(),
                    found.commit_hash,
                    event.recorded_at,
                    event.global_position,
                )
            case ApplicationConfigRemoved() as removed:
                directory = repository_dir(removed.path)
                if directory is not None:
                    await conn.execute(
                        self.sql(_REMOVED, tables),
                        config_id(removed.repository_id, directory, removed.config_filename),
                    )
            case ApplicationRegistered() as registered:
                directory = repository_dir(registered.path)
                if directory is None:
                    return  # never accepted by the API: nothing could be found there
                claimed = config_id(registered.repository_id, directory, registered.config_filename)
                await conn.execute(self.sql(_RELEASE, tables), registered.application_id, claimed)
                await conn.execute(
                    self.sql(_REGISTERED, tables),
                    claimed,
                    registered.repository_id,
                    directory,
                    registered.config_filename,
                    registered.application_id,
                )
            case ApplicationDeleted() as deleted:
                # Also on the name's and the config claim's streams: releasing is idempotent.
                await conn.execute(self.sql(_RELEASE, tables), deleted.application_id, "")
