"""A planned stage's options: its `options_json`, decoded into the config's Struct for its name.

The planner writes each stage's `with:` block back out in full (camelCase,
defaults included, see `shared.planning.spec`), so it decodes straight into
the loader's type: `K8S_CANARY_ROLLOUT` into `K8sCanaryRolloutOptions`, and so on.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.config import STAGE_NAMES, dec_hook

__all__ = ["OptionsError", "stage_options"]


class OptionsError(ValueError):
    """A stage's options that do not decode into its options type (a planner/executor mismatch)."""


def stage_options(name: str, options_json: str) -> Any:
    """The options Struct of stage `name` decoded from `options_json`.

    Raises `OptionsError` for a stage name the config knows no options of, or
    options that do not fit them.
    """
    options_type = STAGE_NAMES.get(name)
    if options_type is None:
        raise OptionsError(f"stage {name} has no options type")
    try:
        return msgspec.json.decode(options_json.encode(), type=options_type, dec_hook=dec_hook)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OptionsError(f"options of stage {name} do not decode: {exc}") from exc
