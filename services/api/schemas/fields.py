"""Field types the resources share: names, paths, labels, log positions, cursors and query
texts, each with the constraint the API enforces and the description the document shows.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from services.api.decider import (
    CONFIG_FILENAME_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAX_LABELS,
    MAX_PATH_LENGTH,
    NAME_PATTERN,
    PATH_PATTERN,
    PROVIDER_PATTERN,
    RULES,
)

Name = Annotated[str, Meta(pattern=NAME_PATTERN, description=RULES["name"])]
RepositoryId = Annotated[str, Meta(pattern=NAME_PATTERN, description=RULES["repository_id"])]
RepoPath = Annotated[
    str, Meta(pattern=PATH_PATTERN, max_length=MAX_PATH_LENGTH, description=RULES["path"])
]
ConfigFilename = Annotated[
    str,
    Meta(pattern=CONFIG_FILENAME_PATTERN, max_length=255, description=RULES["config_filename"]),
]
PlatformProvider = Annotated[
    str, Meta(pattern=PROVIDER_PATTERN, description=RULES["platform_provider"])
]
LabelKey = Annotated[str, Meta(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Meta(pattern=LABEL_VALUE_PATTERN)]
Labels = Annotated[
    dict[LabelKey, LabelValue], Meta(max_length=MAX_LABELS, description=RULES["labels"])
]
Position = Annotated[
    int,
    Meta(
        ge=0,
        description="The log position of the latest event this answer reflects; pass it as "
        "`min_position` to a later read to see at least this state.",
    ),
]

NextCursor = Annotated[
    str | None, Meta(description="Pass as `cursor` for the next page; null on the last page.")
]


Text = Annotated[str, Meta(max_length=256)]
"""Query texts longer than this are refused (`wire.query_str`)."""
LogPosition = Annotated[int, Meta(ge=0)]
MinPosition = Annotated[
    LogPosition | None,
    Meta(
        description="Answer only once the read model has applied the event at this log "
        "position (a write's `position`): read-your-writes. Waits a bounded time, then 503."
    ),
]
PageCursor = Annotated[Text | None, Meta(description="`next_cursor` of the previous page.")]
