"""`shared.chains`: a chain's blocks run in order; a failure or a cancel stops the later ones."""

from __future__ import annotations

import pytest

from shared.chains import CHAIN, CancelChain, ChainState, RecordOutcome, StartChain, matches
from shared.decider import fold
from shared.errors import Rejected
from shared.events.base import Event
from shared.events.catalog import ChainBlockStarted, ChainCompleted, ChainDeploymentFinished
from shared.events.ids import on_chain_deployment_id

START = StartChain(
    chain_id="c1",
    origin_deployment_id="d-dev",
    origin_application_id="dev",
    matched=[["stg", "dev"], [], ["prd", "stg"]],  # the origin and repeats are dropped
)
STG = on_chain_deployment_id("c1", "stg")
PRD = on_chain_deployment_id("c1", "prd")


def run(*commands: StartChain | RecordOutcome | CancelChain) -> tuple[ChainState, list[Event]]:
    """Decide each command on the state the previous ones left; the state and every event."""
    events: list[Event] = []
    for command in commands:
        events += CHAIN.decide(fold(CHAIN, events), command)
    return fold(CHAIN, events), events


def test_start_opens_block_1_and_keeps_empty_matchers_and_repeats_out() -> None:
    state, events = run(START)
    assert [[n.application_id for n in b.nodes] for b in state.blocks] == [
        ["dev"],
        ["stg"],
        ["prd"],
    ]
    assert state.status == "RUNNING" and state.started == 2
    assert state.block_status(0) == "SUCCESS" and state.block_status(1) == "RUNNING"
    assert state.block_status(2) == "PENDING"
    assert events[-1] == ChainBlockStarted(chain_id="c1", index=1)
    assert [(i, n.deployment_id) for i, n in state.triggered_nodes()] == [(1, STG)]
    assert CHAIN.decide(state, START) == []  # a completion delivered twice starts nothing


def test_each_block_waits_for_the_one_before_and_the_last_success_ends_the_chain() -> None:
    state, events = run(START, RecordOutcome(STG, "SUCCESS"))
    assert events[-1] == ChainBlockStarted(chain_id="c1", index=2)
    state, events = run(START, RecordOutcome(STG, "SUCCESS"), RecordOutcome(PRD, "SUCCESS"))
    assert state.status == "SUCCESS" and isinstance(events[-1], ChainCompleted)
    # a deployment of a block not started yet is not recorded
    assert run(START, RecordOutcome(PRD, "SUCCESS"))[0].outcomes.keys() == {"d-dev"}


def test_a_failure_in_stg_ends_the_chain_and_prd_never_starts() -> None:
    state, events = run(START, RecordOutcome(STG, "FAILURE"))
    assert state.status == "FAILURE" and "block 1" in state.reason and "stg" in state.reason
    assert state.block_status(1) == "FAILURE" and state.block_status(2) == "SKIPPED"
    assert not any(isinstance(e, ChainBlockStarted) and e.index == 2 for e in events)
    assert CHAIN.decide(state, RecordOutcome(STG, "FAILURE")) == []  # delivered twice
    with pytest.raises(Rejected, match="ended"):
        CHAIN.decide(state, CancelChain("ops"))


def test_cancelling_ends_it_and_names_what_still_runs() -> None:
    state, _ = run(START, CancelChain("ops"))
    assert state.status == "CANCELLED" and state.cancelled_by == "ops"
    assert [n.deployment_id for n in state.running_deployments()] == [STG]
    assert CHAIN.decide(state, CancelChain("ops")) == []
    # the cancelled deployment's outcome is still recorded, and starts nothing
    assert CHAIN.decide(state, RecordOutcome(STG, "CANCELLED")) == [
        ChainDeploymentFinished(chain_id="c1", deployment_id=STG, status="CANCELLED")  # type: ignore[arg-type]
    ]
    with pytest.raises(Rejected, match="no such chain"):
        CHAIN.decide(ChainState(), CancelChain())


def test_a_chain_with_nothing_matched_succeeds_at_once() -> None:
    state, _ = run(StartChain("c2", "d", "dev", [[], ["dev"]]))
    assert state.status == "SUCCESS" and len(state.blocks) == 1


def test_matchers_need_every_field_they_set() -> None:
    app = {"app_name": "web-prd", "app_kind": "KubernetesApp", "app_labels": {"env": "prd"}}
    assert matches(name="", kind="KUBERNETES", labels={"env": "prd"}, **app)  # type: ignore[arg-type]
    assert matches(name="web-prd", kind="", labels={}, **app)  # type: ignore[arg-type]
    assert not matches(name="web-prd", kind="TERRAFORM", labels={}, **app)  # type: ignore[arg-type]
    assert not matches(name="", kind="", labels={"env": "stg"}, **app)  # type: ignore[arg-type]
