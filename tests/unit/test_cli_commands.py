"""The CLI's command table: each command's run builds the parser from its own module alone
(slipway_cli._COMMANDS), so the table must name the module that registers each command."""

from __future__ import annotations

import argparse

import pytest

from slipway_cli import _COMMANDS, _command_in, build_parser


def _commands_of(parser: argparse.ArgumentParser) -> set[str]:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(subparsers.choices)


def test_the_full_parser_has_exactly_the_tables_commands() -> None:
    assert _commands_of(build_parser()) == set(_COMMANDS)


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_a_commands_module_registers_that_command(command: str) -> None:
    assert _commands_of(build_parser(command)) == {command}


def test_help_and_unknown_commands_get_every_command() -> None:
    assert _command_in(["--help"]) is None
    assert _command_in([]) is None
    assert _command_in(["deploy"]) is None
    assert _command_in(["plan-preview", "--help"]) == "plan-preview"
