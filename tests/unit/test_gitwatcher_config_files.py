"""The gitwatcher's decisions on config files that leave a repository: recorded once, at
the stream's own head, and announced again when they come back."""

from __future__ import annotations

from services.gitwatcher.decider import (
    RepositoryState,
    decide_config_files,
    evolve,
    removed_configs,
    undiscovered_configs,
)
from shared.events.catalog import ApplicationConfigDiscovered, ApplicationConfigRemoved

HEAD = "b" * 40


def found(path: str, filename: str = "app.pipecd.yaml") -> ApplicationConfigDiscovered:
    return ApplicationConfigDiscovered(
        repository_id="r", path=path, config_filename=filename, name=path or "root"
    )


def gone(path: str, filename: str = "app.pipecd.yaml") -> ApplicationConfigRemoved:
    return ApplicationConfigRemoved(
        repository_id="r", path=path, config_filename=filename, commit_hash=HEAD
    )


def test_announced_configs_missing_from_the_tree_are_removed_once_and_come_back_as_new() -> None:
    state = RepositoryState(
        version=4,
        head=HEAD,
        discovered=frozenset({"a/app.pipecd.yaml", "b/.pipe.yaml", "root.pipecd.yaml"}),
    )
    tree = ["a/app.pipecd.yaml", "a/deployment.yaml", "c/app.pipecd.yaml"]
    assert removed_configs(tree, state) == [("b", ".pipe.yaml"), ("", "root.pipecd.yaml")]

    removed = [gone("b", ".pipe.yaml"), gone("", "root.pipecd.yaml")]
    new = [found("c")]
    decided = decide_config_files(state, head=HEAD, found=new, removed=removed)
    assert decided == [*removed, *new]
    for event in decided:
        state = evolve(state, event, state.version + 1)
    assert state.discovered == {"a/app.pipecd.yaml", "c/app.pipecd.yaml"}
    # Once each, whichever replica decides second.
    assert decide_config_files(state, head=HEAD, found=new, removed=removed) == []
    # Back in the tree: announced again.
    assert undiscovered_configs([*tree, "b/.pipe.yaml"], [], state) == [("b", ".pipe.yaml")]


def test_a_replica_judging_another_head_than_the_streams_records_nothing() -> None:
    """One behind would announce again what the others removed; one ahead, remove early."""
    state = RepositoryState(version=2, head=HEAD, discovered=frozenset({"b/app.pipecd.yaml"}))
    other = "a" * 40
    assert decide_config_files(state, head=other, found=[found("c")], removed=[gone("b")]) == []
    assert decide_config_files(state, head=HEAD, found=[], removed=[gone("b")]) == [gone("b")]
