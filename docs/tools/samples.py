"""What the docs show, produced by running the real commands (used by cog).

Regenerate every sample output, `--help` text and picture of the docs with

    MNIST_DATA=/path/to/mnist.npz cog -r -I docs/tools README.md docs/*.md

`help_text` needs nothing; `sample` trains the runs it shows once per cog process (the Keras
recipe, the quickstart, Nielsen's network for 10 epochs) in a temporary folder laid out as
a user's would be (`outputs/...`). Run folders are renamed `<name>-<timestamp>`, other
timestamps and durations masked: everything else is what the commands printed on the real
MNIST, so regenerating changes nothing unless the tool's output changed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent
HELP_WIDTH = 100
EXAMPLES = PROJECT / "docs" / "examples"


def help_text(command: str = "") -> str:
    """`mnist <command> --help`, as a Markdown code block."""
    from click.testing import CliRunner

    from mnist_cli.cli import cli

    arguments = [*command.split(), "--help"]
    result = CliRunner().invoke(cli, arguments, prog_name="mnist", terminal_width=HELP_WIDTH)
    return fence(result.output.rstrip())


def fence(text: str, language: str = "text") -> str:
    return f"```{language}\n{text}\n```\n"


@functools.cache
def _workspace() -> Path:
    """A folder with `configs/` and `docs/examples/`, where the sample runs are trained."""
    if not os.environ.get("MNIST_DATA"):
        raise SystemExit("set MNIST_DATA to the real mnist.npz to regenerate the samples")
    folder = Path(tempfile.mkdtemp(prefix="mnist-docs-"))
    shutil.copytree(PROJECT / "configs", folder / "configs")
    shutil.copytree(EXAMPLES, folder / "docs" / "examples")
    return folder


def _run(arguments: str) -> str:
    environment = {**os.environ, "MNIST_DATA": os.environ["MNIST_DATA"],
                   "COLUMNS": str(HELP_WIDTH)}
    result = subprocess.run([sys.executable, "-m", "mnist_cli", *arguments.split()],
                            cwd=_workspace(), env=environment, capture_output=True, text=True)
    return (result.stdout + result.stderr).rstrip()


@functools.cache
def trained(config: str, *options: str) -> str:
    """Train `configs/<config>.yaml` once; the run's folder relative to the workspace."""
    before = set((_workspace() / "outputs").glob("*"))
    _run(f"train -c configs/{config}.yaml {' '.join(options)}")
    (new,) = set((_workspace() / "outputs").glob("*")) - before
    # A name without the real timestamp, so the pictures' titles are the same every time.
    stable = new.with_name(f"{config}-<timestamp>")
    new.rename(stable)
    return str(stable.relative_to(_workspace()))


def _masked(text: str) -> str:
    text = re.sub(r"-\d{8}-\d{6}(-\d+)?", "-<timestamp>", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "<date> <time>", text)
    text = re.sub(r"\b\d+(\.\d+)?s\b", "<time>", text)  # epoch seconds: 0.52s
    text = re.sub(r"\b\d+(\.\d+)? s\b|\b\d+ min \d+ s\b", "<time>", text)  # train time column
    return text.replace(os.environ["MNIST_DATA"], "/data/mnist.npz")


def run_name(config: str, *options: str) -> str:
    return _masked(trained(config, *options))


def sample(command: str) -> str:
    """`mnist <command>` run in the workspace, shown as typed and as printed. `{keras}`,
    `{quickstart}` and `{nielsen}` stand for the sample runs."""
    runs = {"keras": trained("keras-784-500-10"), "quickstart": trained("quickstart"),
            "nielsen": trained("nielsen-784-30-10", "--epochs", "10")}
    typed = command.format(**runs)
    return fence(f"$ mnist {_masked(typed)}\n{_masked(_run(typed))}", "console")


def picture(run: str, name: str, target: str) -> str:
    """Copy `name` from a sample run (or the workspace) to `docs/<target>`; a Markdown link."""
    runs = {"keras": trained("keras-784-500-10")}
    source = _workspace() / (runs[run] if run in runs else run) / name
    shutil.copyfile(source, PROJECT / "docs" / target)
    return ""


def _allowed(field) -> str:
    """A field's allowed values, read off its annotation: choices, or a type and range."""
    import typing

    from mnist_cli.config.schema import plain_types

    kinds = plain_types(field.annotation)
    for kind in kinds:
        if typing.get_origin(kind) is typing.Literal:
            return " \\| ".join(f"`{value}`" for value in typing.get_args(kind))
    constraints = list(field.metadata)
    stack = [field.annotation]
    while stack:  # constraints inside Optional[Annotated[...]]
        current = stack.pop()
        stack.extend(typing.get_args(current))
        for meta in getattr(current, "__metadata__", ()):
            constraints.extend(getattr(meta, "metadata", ()) or [meta])
    bounds = []
    for constraint in constraints:
        for attribute, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            value = getattr(constraint, attribute, None)
            if value is not None and not callable(value):
                bounds.append(f"{symbol} {value}")
    if typing.get_origin(field.annotation) is list:
        return "a list"
    names = sorted({kind.__name__ for kind in kinds
                    if isinstance(kind, type) and kind is not type(None)})
    return f"{' or '.join(names)} {', '.join(dict.fromkeys(bounds))}".strip()


def config_reference() -> str:
    """Every config key: its default, allowed values and meaning, from the schema itself."""
    import json

    from pydantic import BaseModel

    from mnist_cli.config import Config
    from mnist_cli.config.schema import Initializer, plain_types

    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            sections = [kind for kind in plain_types(field.annotation)
                        if isinstance(kind, type) and issubclass(kind, BaseModel)
                        and kind is not Initializer]
            if sections and field.default_factory is not None:
                walk(sections[0], f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            shown = json.dumps(default) if not isinstance(default, str) else default
            meaning = (field.description or "").replace("|", "\\|")
            allowed = "a mapping of the keys below" if sections else _allowed(field)
            rows.append(f"| `{prefix}{name}` | `{shown}` | {allowed} | {meaning} |")
            if sections:
                walk(sections[0], f"{prefix}{name}.")

    walk(Config, "")
    return "\n".join(rows) + "\n"
