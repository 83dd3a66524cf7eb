"""The docs show what the commands really print: every command's `--help` in docs/cli.md is
the current one (regenerate with `cog -r -I docs/tools README.md docs/*.md`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mnist_cli.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "tools"))

import samples  # noqa: E402

BLOCK = re.compile(r'samples\.help_text\("([^"]*)"\)\)\n\]\]\] -->\n(.*?)<!-- \[\[\[end\]\]\] -->',
                   re.DOTALL)


def documented_help() -> dict[str, str]:
    return {command: text for command, text in BLOCK.findall((DOCS / "cli.md").read_text())}


def test_every_command_has_its_help_in_the_docs():
    assert set(documented_help()) == set(cli.commands)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_the_documented_help_is_the_real_one(command):
    assert documented_help().get(command) == samples.help_text(command), (
        f"docs/cli.md shows an old `mnist {command} --help`: regenerate it with cog")
