"""Every command's --help renders (rich markup in a help string once crashed `rag eval --help`)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rag.cli import app

COMMANDS = [
    "index",
    "ask",
    "search",
    "indexes",
    "eval-retrieval",
    "eval",
    "serve",
    "generator-folder",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_renders(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
